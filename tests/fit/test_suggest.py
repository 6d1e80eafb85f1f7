"""Suggestions are the edge of what fits, proven against the estimator itself."""

from __future__ import annotations

from pathlib import Path

from llm_mcp.hardware.fit_estimate import estimate
from llm_mcp.hardware.fit_settings import settings_from_args
from llm_mcp.hardware.fit_suggest import expert_cutoff_pattern, fits, suggest
from llm_mcp.hardware.gguf_info import read_model_info

MiB = 1 << 20


def _gpu_fits(info, args: list[str], free: dict[str, int]) -> bool:  # type: ignore[no-untyped-def]
    est = estimate(info, settings_from_args(args), n_gpus=1)
    return fits(est, free, lambda d: d != "host")


def test_suggested_n_cpu_moe_and_cutoff_are_the_edge_of_what_fits_a_stated_gpu(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    base = ["-c", "4096"]
    everything = estimate(info, settings_from_args(base), n_gpus=1).gpus[0]
    # Free GPU memory: enough for about half of the experts.
    free = {"gpu0": everything.total + everything.band - info.expert_bytes // 2}
    s = suggest(info, settings_from_args(base), free, n_gpus=1)
    assert s.n_cpu_moe is not None and 0 < s.n_cpu_moe < info.n_layer
    assert _gpu_fits(info, [*base, "--n-cpu-moe", str(s.n_cpu_moe)], free)
    assert not _gpu_fits(info, [*base, "--n-cpu-moe", str(s.n_cpu_moe - 1)], free)
    assert s.expert_cutoff is not None and s.expert_cutoff_override is not None
    assert _gpu_fits(info, [*base, "-ot", s.expert_cutoff_override], free)
    one_more = expert_cutoff_pattern(s.expert_cutoff + 1, info.n_layer)
    assert not _gpu_fits(info, [*base, "-ot", one_more], free)
    # Half the experts fit, so the two forms keep the same number of blocks on the CPU.
    assert info.n_layer - s.expert_cutoff == s.n_cpu_moe


def test_suggested_gpu_layers_and_context_are_the_largest_that_fit(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    args = ["-c", "8192"]
    gpu = estimate(info, settings_from_args(args), n_gpus=1).gpus[0]
    free = {"gpu0": gpu.overhead + gpu.band + (gpu.total - gpu.overhead) // 2}
    s = suggest(info, settings_from_args(args), free, n_gpus=1)
    assert s.n_gpu_layers is not None and 0 < s.n_gpu_layers < info.n_layer + 1
    assert _gpu_fits(info, [*args, "-ngl", str(s.n_gpu_layers)], free)
    assert not _gpu_fits(info, [*args, "-ngl", str(s.n_gpu_layers + 1)], free)
    # The context, with every layer on the GPU: room for about 4096 cells, not 8192.
    at_4k = estimate(info, settings_from_args(["-c", "4096"]), n_gpus=1).gpus[0]
    free = {"gpu0": at_4k.total + at_4k.band}
    s = suggest(info, settings_from_args(args), free, n_gpus=1)
    assert s.ctx_size is not None and s.ctx_size % 256 == 0 and 4096 <= s.ctx_size < 8192
    assert _gpu_fits(info, ["-c", str(s.ctx_size)], free)
    assert not _gpu_fits(info, ["-c", str(s.ctx_size + 256)], free)


def test_an_existing_expert_override_is_replaced_not_stacked_when_searching(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    # The example config's pattern: every block's experts on the CPU.
    args = ["-c", "4096", "-ot", r"blk\.\d+\.ffn_(up|down|gate)_exps\.=CPU"]
    gpu = estimate(info, settings_from_args(["-c", "4096"]), n_gpus=1).gpus[0]
    free = {"gpu0": gpu.total + gpu.band}
    s = suggest(info, settings_from_args(args), free, n_gpus=1)
    assert (s.n_cpu_moe, s.expert_cutoff) == (0, info.n_layer)  # everything fits on the GPU


def test_on_a_cpu_only_machine_only_the_context_is_suggested(moe_model: Path) -> None:
    info = read_model_info(moe_model)
    host = estimate(info, settings_from_args(["-c", "2048"])).host
    s = suggest(info, settings_from_args(["-c", "2048"]), {"host": host.total + host.band}, n_gpus=0)
    assert (s.n_gpu_layers, s.n_cpu_moe, s.expert_cutoff) == (None, None, None)
    assert s.ctx_size is not None and s.ctx_size >= 2048
