"""GGUF models of chosen shapes, for checking memory estimates against llama-server.

:func:`write_shaped_model` writes a loadable llama-architecture model: dense or with
expert tensors (``ffn_*_exps``), any number of query / KV heads (GQA), F32, F16 or Q8_0
weights, tied or separate output. :func:`write_header_only_model` writes a full-size
GGUF header whose tensor data is a hole in a sparse file: a "60 GB" model that costs
nothing on disk, for reading headers at scale. Needs the ``demo`` extra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llm_mcp.demo.tiny_model import CHATML_TEMPLATE, _vocab

__all__ = ["Shape", "write_header_only_model", "write_shaped_model"]


@dataclass(frozen=True, slots=True)
class Shape:
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_head_kv: int = 8
    n_ff: int = 512
    n_expert: int = 0
    n_expert_used: int = 0
    weight_type: str = "F32"  # F32, F16 or Q8_0
    tied_output: bool = False
    n_ctx_train: int = 4096
    arch: str = "llama"  # or "gemma3": sliding-window attention on 5 of every 6 layers
    sliding_window: int = 0  # gemma3 only


def _add_hparams(writer: object, shape: Shape, n_vocab: int) -> None:
    import gguf

    w = writer
    assert isinstance(w, gguf.GGUFWriter)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.n_embd // shape.n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    if shape.n_expert:
        w.add_expert_count(shape.n_expert)
        w.add_expert_used_count(shape.n_expert_used)
    if shape.sliding_window:
        w.add_sliding_window(shape.sliding_window)


def _tensor_shapes(shape: Shape, n_vocab: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape, is a matrix) in file order; numpy shape is GGUF's ne reversed."""
    e, f, hd = shape.n_embd, shape.n_ff, shape.n_embd // shape.n_head
    kv = shape.n_head_kv * hd
    out: list[tuple[str, tuple[int, ...], bool]] = [("token_embd.weight", (n_vocab, e), True)]
    for i in range(shape.n_layer):
        b = f"blk.{i}"
        out += [
            (f"{b}.attn_norm.weight", (e,), False),
            (f"{b}.attn_q.weight", (e, e), True),
            (f"{b}.attn_k.weight", (kv, e), True),
            (f"{b}.attn_v.weight", (kv, e), True),
            (f"{b}.attn_output.weight", (e, e), True),
            (f"{b}.ffn_norm.weight", (e,), False),
        ]
        if shape.arch == "gemma3":
            out += [
                (f"{b}.post_attention_norm.weight", (e,), False),
                (f"{b}.attn_k_norm.weight", (hd,), False),
                (f"{b}.attn_q_norm.weight", (hd,), False),
                (f"{b}.post_ffw_norm.weight", (e,), False),
            ]
        if shape.n_expert:
            x = shape.n_expert
            out += [
                (f"{b}.ffn_gate_inp.weight", (x, e), False),
                (f"{b}.ffn_gate_exps.weight", (x, f, e), True),
                (f"{b}.ffn_down_exps.weight", (x, e, f), True),
                (f"{b}.ffn_up_exps.weight", (x, f, e), True),
            ]
        else:
            out += [(f"{b}.ffn_gate.weight", (f, e), True), (f"{b}.ffn_down.weight", (e, f), True),
                    (f"{b}.ffn_up.weight", (f, e), True)]  # fmt: skip
    out.append(("output_norm.weight", (e,), False))
    if not shape.tied_output:
        out.append(("output.weight", (n_vocab, e), True))
    return out


def write_shaped_model(
    path: Path, shape: Shape, *, seed: int = 0, name: str = "shaped", split_max_tensors: int = 0
) -> Path:
    """Write a loadable model of ``shape`` to ``path``; same arguments, same bytes.

    With ``split_max_tensors`` the model is split as llama.cpp's gguf-split does
    (``STEM-00001-of-0000N.gguf`` beside ``path``); the first file is returned.
    """
    import gguf
    import numpy as np
    from gguf.quants import quantize

    if shape.n_embd % shape.n_head or shape.n_head % shape.n_head_kv:
        raise ValueError("n_embd must be a multiple of n_head, and n_head of n_head_kv")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _vocab()
    rng = np.random.default_rng(seed)
    qtype = gguf.GGMLQuantizationType[shape.weight_type]

    writer = gguf.GGUFWriter(str(path), shape.arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    _add_hparams(writer, shape, len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHATML_TEMPLATE)
    for tname, np_shape, matrix in _tensor_shapes(shape, len(tokens)):
        if not matrix:
            writer.add_tensor(tname, np.ones(np_shape, dtype=np.float32))
            continue
        data = (rng.standard_normal(np_shape) * np_shape[-1] ** -0.5).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(tname, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tname, data.astype(np.float16))
        else:
            writer.add_tensor(tname, quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors and len(writer.tensors) > 1:
        return path.with_name(f"{path.stem}-00001-of-{len(writer.tensors):05d}.gguf")
    return path


def write_header_only_model(
    path: Path, shape: Shape, *, n_vocab: int = 151_936, weight_type: str = "Q4_K", name: str = "header-only"
) -> Path:
    """A GGUF header for ``shape`` with a real-size vocabulary; tensor data is a sparse hole.

    The file's size is what the real model's would be, but no data block is written, so a
    "60 GB" model costs a few MB of disk. llama-server cannot run it (the data is zeros);
    header readers and estimators see a real model.
    """
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qtype = gguf.GGMLQuantizationType[weight_type]
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    writer = gguf.GGUFWriter(str(path), shape.arch)
    writer.add_name(name)
    _add_hparams(writer, shape, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(n_vocab)])
    writer.add_token_types([1] * n_vocab)
    writer.add_token_merges([f"m{i} n{i}" for i in range(n_vocab // 2)])
    writer.add_chat_template(CHATML_TEMPLATE)
    for tname, np_shape, matrix in _tensor_shapes(shape, n_vocab):
        n = int(np.prod(np_shape))
        if matrix and np_shape[-1] % block == 0:
            nbytes = n // block * type_size
            byte_shape = (*np_shape[:-1], np_shape[-1] // block * type_size)
            writer.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        else:
            writer.add_tensor_info(tname, np_shape, np.dtype(np.float32), n * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    # The data section: its size without writing it (a hole in a sparse file).
    data_bytes = sum(ti.nbytes + (-ti.nbytes % writer.data_alignment) for ti in writer.tensors[0].values())
    with open(path, "r+b") as f:
        header = f.seek(0, os.SEEK_END)
        f.truncate(header + (-header % writer.data_alignment) + data_bytes)
    return path
