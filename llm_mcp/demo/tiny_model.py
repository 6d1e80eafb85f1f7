"""Tiny GGUF models for the demo and the tests, plus broken files for the failure paths.

A real llama-server loads :func:`write_tiny_model`'s output in tens of milliseconds
and answers chat completions with it (gibberish text, valid JSON, deterministic at
temperature 0). Needs the ``demo`` extra (``gguf`` and ``numpy``), imported lazily.

``python -m llm_mcp.demo.tiny_model OUT_DIR`` writes tiny-a.gguf, tiny-b.gguf,
corrupt.gguf (truncated), not-gguf.gguf and empty.gguf into OUT_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

# ChatML, the template llama.cpp recognises as "chatml".
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A few printable SentencePiece pieces after the byte tokens ("▁" marks a word start).
_PIECES = (
    "▁",
    "▁the",
    "▁a",
    "▁is",
    "▁model",
    "▁tiny",
    "▁hello",
    "▁world",
    "▁ok",
    "e",
    "t",
    "a",
    "o",
    "n",
    "s",
    "r",
    "l",
    "i",
    ".",
    ",",
    "!",
    "?",
)
_UNK, _BOS, _EOS = 0, 1, 2


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style vocab: control tokens, the 256 byte tokens, printable pieces."""
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [int(TokenType.BYTE)] * 256
    tokens += ["<|im_start|>", "<|im_end|>"]
    types += [int(TokenType.CONTROL)] * 2
    tokens += list(_PIECES)
    types += [int(TokenType.NORMAL)] * len(_PIECES)
    scores = [0.0] * (len(tokens) - len(_PIECES)) + [-float(i) for i in range(len(_PIECES))]
    return tokens, scores, types


def write_tiny_model(
    path: Path,
    *,
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_ff: int = 128,
    name: str = "tiny",
) -> Path:
    """Write a valid llama-architecture GGUF with F32 random weights; return ``path``.

    Same arguments, same bytes: the weights come from ``numpy.random.default_rng(seed)``.
    Two different seeds (or names, or shapes) give two different models. The head
    dimension is ``n_embd // n_head`` (16 by default; use 32+ for ``--cache-type-k q8_0``).
    """
    import gguf
    import numpy as np

    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    F32Array = np.ndarray[tuple[int, ...], np.dtype[np.float32]]

    def weight(*shape: int) -> F32Array:
        # numpy shape is GGUF's ne reversed: (rows, cols) == ne {cols, rows}.
        scale = float(shape[-1]) ** -0.5
        w: F32Array = (rng.standard_normal(shape) * scale).astype(np.float32)
        return w

    def ones(n: int) -> F32Array:
        return np.ones((n,), dtype=np.float32)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(_BOS)
    writer.add_eos_token_id(_EOS)
    writer.add_unk_token_id(_UNK)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    for i in range(n_layer):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones(n_embd))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones(n_embd))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", ones(n_embd))
    writer.add_tensor("output.weight", weight(n_vocab, n_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_truncated_model(src: Path, dst: Path) -> Path:
    """Copy the first half of ``src`` to ``dst``: a GGUF header whose tensors end past EOF.

    llama-server rejects it with "tensor '...' data is not within the file bounds".
    """
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def write_not_gguf(path: Path) -> Path:
    """A file that is not GGUF ("invalid magic characters")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a GGUF model, just text\n" * 4)
    return path


def write_empty(path: Path) -> Path:
    """An empty file ("failed to read magic")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_demo_models(out_dir: Path) -> dict[str, Path]:
    """Write the demo's set of models into ``out_dir``; return them by file name."""
    out_dir = Path(out_dir)
    a = write_tiny_model(out_dir / "tiny-a.gguf", seed=0, n_layer=2, name="tiny-a")
    b = write_tiny_model(out_dir / "tiny-b.gguf", seed=1, n_layer=3, name="tiny-b")
    files = [
        a,
        b,
        write_truncated_model(a, out_dir / "corrupt.gguf"),
        write_not_gguf(out_dir / "not-gguf.gguf"),
        write_empty(out_dir / "empty.gguf"),
    ]
    return {p.name: p for p in files}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m llm_mcp.demo.tiny_model OUT_DIR", file=sys.stderr)
        return 2
    for name, p in write_demo_models(Path(args[0])).items():
        print(f"{p}  {p.stat().st_size} bytes  ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
