"""The estimator's placement and sizes, checked against llama.cpp's rules (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_mcp.hardware.fit_estimate import GPU_OVERHEAD_BYTES, estimate, verdict
from llm_mcp.hardware.fit_settings import SettingsError, settings_from_args
from llm_mcp.hardware.gguf_info import read_model_info

MiB = 1 << 20


def test_n_gpu_layers_offloads_the_last_layers_and_counts_the_output_layer_as_one(moe_model: Path) -> None:
    info = read_model_info(moe_model)  # 8 layers + output
    est = estimate(info, settings_from_args(["-ngl", "3"]), n_gpus=1)
    on_gpu = {n for n, d in est.placement.items() if d == "gpu0"}
    assert {n.split(".")[1] for n in on_gpu if n.startswith("blk.")} == {"6", "7"}
    assert {"output.weight", "output_norm.weight"} <= on_gpu
    assert est.placement["token_embd.weight"] == "host"  # the input layer never moves
    everything = estimate(info, settings_from_args([]), n_gpus=1)
    assert everything.host.weights == info.tensors[0].n_bytes  # only token_embd stays
    assert everything.gpus[0].weights + everything.host.weights == info.weight_bytes


def test_the_first_matching_override_wins_in_command_line_order(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    # -ot comes before --n-cpu-moe in the profile's argv; block 0's attention goes to CUDA0 first.
    s = settings_from_args(["-ot", r"blk\.0\.attn=CUDA0,blk\.0\.=CPU", "--n-cpu-moe", "2"])
    est = estimate(info, s, n_gpus=1)
    assert est.placement["blk.0.attn_q.weight"] == "gpu0"
    assert est.placement["blk.0.ffn_norm.weight"] == "host"
    assert est.placement["blk.1.ffn_up_exps.weight"] == "host"  # --n-cpu-moe 2: blocks 0 and 1
    assert est.placement["blk.2.ffn_up_exps.weight"] == "gpu0"
    assert est.placement["blk.1.ffn_gate_inp.weight"] == "gpu0"  # the router is not an expert tensor


def test_cpu_moe_moves_every_expert_tensor_and_nothing_else(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    est = estimate(info, settings_from_args(["--cpu-moe"]), n_gpus=1)
    host = {n for n, d in est.placement.items() if d == "host"}
    assert host == {t.name for t in info.tensors if t.is_expert} | {"token_embd.weight"}
    assert est.host.weights == info.expert_bytes + info.tensors[0].n_bytes


def test_tensor_split_divides_the_offloaded_layers_by_proportion(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    est = estimate(info, settings_from_args(["--tensor-split", "3,1"]), n_gpus=2)
    blocks = {
        d: {int(n.split(".")[1]) for n, dev in est.placement.items() if dev == d and n.startswith("blk.")}
        for d in ("gpu0", "gpu1")
    }
    # 9 layers (8 + output) split 3:1: layers 0-6 on the first GPU (il/9 < 0.75), 7 and output on the second.
    assert blocks == {"gpu0": set(range(7)), "gpu1": {7}}
    assert est.placement["output.weight"] == "gpu1"
    assert all(d.overhead == GPU_OVERHEAD_BYTES for d in est.gpus)


def test_kv_cache_follows_ctx_parallel_unified_and_cache_types(moe_model: Path) -> None:
    info = read_model_info(moe_model)  # 8 layers, 4 KV heads x 32 = 128 values per cell for K and V
    per_cell_f16 = 8 * 2 * 128 * 2
    assert estimate(info, settings_from_args(["-c", "4000"])).host.kv == 4096 * per_cell_f16  # padded to 256
    # --parallel 3 without --kv-unified: three streams of pad(4096 / 3) cells.
    assert estimate(info, settings_from_args(["-c", "4096", "-np", "3"])).host.kv == 3 * 1536 * per_cell_f16
    assert (
        estimate(info, settings_from_args(["-c", "4096", "-np", "3", "-kvu"])).host.kv == 4096 * per_cell_f16
    )
    q8 = estimate(info, settings_from_args(["-c", "4096", "-ctk", "q8_0", "-ctv", "q8_0"])).host.kv
    assert q8 == 4096 * 8 * 2 * (128 // 32 * 34)
    # KV lives with its layer: -ngl 4 puts 3 repeating layers' cache on the GPU.
    split = estimate(info, settings_from_args(["-c", "4096", "-ngl", "4"]), n_gpus=1)
    assert split.gpus[0].kv == 3 * 4096 * 2 * 128 * 2 and split.host.kv == 5 * 4096 * 2 * 128 * 2
    assert estimate(info, settings_from_args(["-c", "4096", "-nkvo"]), n_gpus=1).gpus[0].kv == 0


def test_verdict_is_fits_tight_or_wont_fit_around_the_error_band(moe_model: Path) -> None:
    est = estimate(read_model_info(moe_model), settings_from_args(["-c", "2048"]), n_gpus=1)
    gpu = est.gpus[0]
    assert verdict(est, {"gpu0": gpu.total + gpu.band}).fit == "fits"
    assert verdict(est, {"gpu0": gpu.total + gpu.band - 1}).fit == "tight"
    assert verdict(est, {"gpu0": gpu.total - gpu.band}).fit == "tight"
    assert verdict(est, {"gpu0": gpu.total - gpu.band - 1}).fit == "wont_fit"
    # The worst device decides; a device without a figure is not judged.
    v = verdict(est, {"gpu0": 10 << 30, "host": 1})
    assert (v.fit, v.per_device) == ("wont_fit", {"gpu0": "fits", "host": "wont_fit"})


@pytest.mark.parametrize(
    "args",
    [
        ["-ot", "nothing"],
        ["-ot", "x=CPU,y"],
        ["-ngl", "lots"],
        ["-ctk", "q3_x"],
        ["-ot", "blk\\.(=CPU"],
        ["--n-cpu-moe"],
    ],
)
def test_flags_llama_server_would_reject_are_a_settings_error(args: list[str]) -> None:
    with pytest.raises(SettingsError):
        settings_from_args(args)


def test_a_pathological_override_pattern_fails_clearly_within_its_time_budget(moe_model: Path) -> None:
    import time

    info = read_model_info(moe_model)
    # Nested alternatives that overlap: exponential backtracking on every tensor name.
    s = settings_from_args(["-ot", r"(?:[a-z]|_|[a-z_]|[a-z_.])*\d$=CPU"])
    start = time.monotonic()
    with pytest.raises(SettingsError, match="simplify it"):
        estimate(info, s, n_gpus=1)
    assert time.monotonic() - start < 3


def test_sliding_window_layers_hold_the_window_per_slot_plus_one_ubatch(tmp_path: Path) -> None:
    from llm_mcp.demo.shaped_model import Shape, write_shaped_model

    shape = Shape(arch="gemma3", n_layer=6, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, sliding_window=128)
    info = read_model_info(write_shaped_model(tmp_path / "g3.gguf", shape))
    assert info.swa_layers == (True, True, True, True, True, False)  # llama.cpp's period 6 for gemma3
    cell = 2 * 2 * 64 * 2  # K and V, 2 KV heads x 64, f16
    # Unified (the server's default 4 slots): pad256(128 x 4 + 512) = 1024 cells on 5 layers.
    assert estimate(info, settings_from_args(["-c", "4096"])).host.kv == (4096 + 5 * 1024) * cell
    # --swa-full: every layer holds the whole context.
    assert estimate(info, settings_from_args(["-c", "4096", "--swa-full"])).host.kv == 6 * 4096 * cell
