"""The GGUF header reader: what it finds, how fast, and what it says about broken files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llm_mcp.demo.shaped_model import Shape, write_header_only_model, write_shaped_model
from llm_mcp.demo.tiny_model import write_empty, write_not_gguf, write_tiny_model, write_truncated_model
from llm_mcp.hardware.gguf_info import GGUFError, read_model_info, read_model_info_cached


def test_reads_architecture_attention_shape_and_every_tensor_of_a_gqa_model(tmp_path: Path) -> None:
    path = write_shaped_model(
        tmp_path / "gqa.gguf", Shape(n_layer=3, n_embd=256, n_head=8, n_head_kv=2, n_ff=512)
    )
    info = read_model_info(path)
    assert (info.architecture, info.n_layer, info.n_embd, info.n_ff) == ("llama", 3, 256, 512)
    assert info.n_head == (8, 8, 8) and info.n_head_kv == (2, 2, 2)
    assert (info.head_dim_k, info.head_dim_v) == (32, 32)
    assert info.kv_width(0) == (64, 64)
    assert len(info.tensors) == 1 + 3 * 9 + 2
    k = next(t for t in info.tensors if t.name == "blk.1.attn_k.weight")
    assert (k.type_name, k.shape, k.n_bytes, k.block, k.is_expert) == (
        "F32",
        (256, 64),
        256 * 64 * 4,
        1,
        False,
    )
    # Every tensor's bytes lie inside the file, and together they are the data section.
    assert info.tensors[0].offset + info.weight_bytes <= info.file_size
    assert max(t.offset + t.n_bytes for t in info.tensors) == info.file_size


def test_finds_the_expert_tensors_and_counts_of_a_moe_model(tmp_path: Path) -> None:
    shape = Shape(
        n_layer=2, n_embd=128, n_head=4, n_head_kv=4, n_ff=64, n_expert=4, n_expert_used=2, weight_type="Q8_0"
    )
    info = read_model_info(write_shaped_model(tmp_path / "moe.gguf", shape))
    assert (info.n_expert, info.n_expert_used) == (4, 2)
    experts = sorted(t.name for t in info.tensors if t.is_expert)
    assert experts == [f"blk.{b}.ffn_{w}_exps.weight" for b in (0, 1) for w in ("down", "gate", "up")]
    up = next(t for t in info.tensors if t.name == "blk.0.ffn_up_exps.weight")
    assert up.type_name == "Q8_0" and up.shape == (128, 64, 4)
    assert up.n_bytes == 128 // 32 * 34 * 64 * 4  # q8_0: 34 bytes per 32 values
    assert info.expert_bytes == 6 * up.n_bytes


def test_a_60_gb_model_header_reads_in_milliseconds_without_reading_tensor_data(tmp_path: Path) -> None:
    # 94 layers x 128 experts, a 152k-token vocabulary; the data is a hole in a sparse file.
    shape = Shape(n_layer=94, n_embd=4096, n_head=64, n_head_kv=4, n_ff=1536, n_expert=128, n_expert_used=8)
    path = write_header_only_model(tmp_path / "big.gguf", shape, weight_type="Q4_K")
    st = os.stat(path)
    assert st.st_size > 60e9 and st.st_blocks * 512 < 64 << 20
    start = time.perf_counter()
    info = read_model_info(path)
    elapsed = time.perf_counter() - start
    assert info.n_vocab == 151_936 and len(info.tensors) == 1 + 94 * 10 + 2
    assert info.weight_bytes > 60e9
    assert elapsed < 1.0, f"{elapsed:.3f}s: reading a header must not touch tensor data"


def test_the_cached_reader_rereads_a_file_that_changed(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "m.gguf", n_layer=2)
    assert read_model_info_cached(path).n_layer == 2
    assert read_model_info_cached(path) is read_model_info_cached(path)
    write_tiny_model(tmp_path / "m.gguf", n_layer=3)
    assert read_model_info_cached(path).n_layer == 3


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.gguf", "no such file"),
        (lambda d: write_empty(d / "empty.gguf"), "empty file"),
        (lambda d: write_not_gguf(d / "text.gguf"), "not a GGUF file"),
        (
            lambda d: write_truncated_model(write_tiny_model(d / "ok.gguf"), d / "half.gguf"),
            "truncated: tensor",
        ),
        (lambda d: d, "not a regular file"),
    ],
    ids=["missing", "empty", "not-gguf", "truncated", "directory"],
)
def test_a_broken_model_file_is_an_error_that_says_why(tmp_path: Path, make: object, reason: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(GGUFError) as caught:
        read_model_info(path)
    assert reason in str(caught.value) and str(path) in str(caught.value)


def test_a_header_cut_inside_the_metadata_is_reported_as_truncated(tmp_path: Path) -> None:
    whole = write_tiny_model(tmp_path / "ok.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:2000])  # inside the vocabulary
    with pytest.raises(GGUFError, match="truncated: the file ends inside the header"):
        read_model_info(cut)


def test_a_split_model_is_read_whole_from_its_first_file(tmp_path: Path) -> None:
    whole = read_model_info(write_shaped_model(tmp_path / "whole.gguf", Shape()))
    first = write_shaped_model(tmp_path / "split" / "m.gguf", Shape(), split_max_tensors=15)
    assert first.name == "m-00001-of-00003.gguf"
    info = read_model_info(first)
    assert [t.name for t in info.tensors] == [t.name for t in whole.tensors]
    assert info.weight_bytes == whole.weight_bytes and info.n_layer == whole.n_layer
    with pytest.raises(GGUFError, match="point the profile at the first file"):
        read_model_info(first.with_name("m-00002-of-00003.gguf"))
    first.with_name("m-00003-of-00003.gguf").unlink()
    with pytest.raises(GGUFError, match=r"split 3 of 3 is missing: m-00003-of-00003\.gguf"):
        read_model_info(first)
