"""Pre-flight arithmetic (llm_mcp.core.preflight), the memory view's figures and the per-profile cache.

GPU figures here come from tests/unit/nvml_standin.py, a STAND-IN for pynvml (no GPU on this
machine); the host figures are this machine's own (psutil).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import psutil
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.fit_board import FitBoard
from llm_mcp.core.memory_view import LiveMemoryView, container_anon_bytes, processes_anon_bytes
from llm_mcp.core.preflight import DeviceMemory, MemorySnapshot, check
from llm_mcp.demo.shaped_model import Shape, write_shaped_model
from llm_mcp.hardware.fit_estimate import DeviceEstimate, Estimate
from llm_mcp.hardware.gpu import GpuSampler, GpuSnapshot
from tests.unit.nvml_standin import GIB, MIB, FakeGpu, FakeProcess, NvmlStandIn, no_library

GPU_NEED = DeviceEstimate("gpu0", weights=10 * GIB, kv=1 * GIB, compute=256 * MIB, overhead=512 * MIB)
HOST_NEED = DeviceEstimate("host", weights=200 * MIB, kv=0, compute=8 * MIB, overhead=64 * MIB)
EST = Estimate((HOST_NEED, GPU_NEED), n_ctx=4096, gpu_layers=33)


def memory(gpu_free: int | None, gpu_held: int = 0, host_free: int | None = 64 * GIB,
           replacing: str | None = "Old Model") -> MemorySnapshot:
    return MemorySnapshot((DeviceMemory("host", host_free), DeviceMemory("gpu0", gpu_free, gpu_held)),
                          replacing=replacing)


def test_the_memory_the_replaced_model_holds_counts_as_free() -> None:
    # 8 GiB free now is short of ~11.8 GiB; with the 6 GiB the running model holds it fits.
    alone = check(EST, memory(8 * GIB))
    replacing = check(EST, memory(8 * GIB, gpu_held=6 * GIB))
    assert alone.verdict == "wont_fit"
    assert replacing.verdict == "fits"
    gpu = {d["device"]: d for d in replacing.to_dict()["devices"]}["gpu0"]
    assert gpu == {"device": "gpu0", "need_bytes": GPU_NEED.total, "free_bytes": 14 * GIB, "verdict": "fits"}


def test_within_the_band_either_way_is_tight_and_beyond_it_is_fits_or_wont_fit() -> None:
    need, band = GPU_NEED.total, GPU_NEED.band
    assert band > 300 * MIB  # 2 % of weights and KV, 35 % of compute, 50 % of overhead
    assert check(EST, memory(need + band)).verdict == "fits"
    assert check(EST, memory(need + band - 1)).verdict == "tight"
    assert check(EST, memory(need)).verdict == "tight"
    assert check(EST, memory(need - band)).verdict == "tight"
    assert check(EST, memory(need - band - 1)).verdict == "wont_fit"
    # the held memory is part of the sum, not a separate allowance
    assert check(EST, memory(need - band - 1 - 4 * GIB, gpu_held=4 * GIB)).verdict == "wont_fit"
    assert check(EST, memory(need + band - 4 * GIB, gpu_held=4 * GIB)).verdict == "fits"


def test_the_worst_device_decides_and_the_message_gives_its_numbers() -> None:
    result = check(EST, memory(20 * GIB, host_free=100 * MIB))
    assert result.verdict == "wont_fit"
    assert [d.verdict for d in result.devices] == ["wont_fit", "fits"]
    assert result.message.startswith("does not fit: needs 272.0 MiB")
    assert "on host, 100.0 MiB free" in result.message
    held = check(EST, memory(5 * GIB, gpu_held=2 * GIB))
    assert "on gpu0, 7.00 GiB free (counting the 2.00 GiB that Old Model holds)" in held.message


def test_a_device_without_figures_is_unknown_but_never_hides_a_wont_fit() -> None:
    assert check(EST, memory(None)).verdict == "unknown"
    assert check(EST, memory(None, host_free=1 * MIB)).verdict == "wont_fit"
    failed = MemorySnapshot((DeviceMemory("host", 64 * GIB),), error="GPU sampling failed: boom")
    result = check(EST, failed)
    assert result.verdict == "unknown"
    assert result.to_dict()["error"] == "GPU sampling failed: boom"


def test_container_memory_counts_anonymous_pages_only() -> None:
    # cgroup v1 (this machine's engine): rss; its mapped model file is page cache, already available.
    v1 = {"memory_stats": {"usage": 900 * MIB, "stats": {
        "total_rss": 300 * MIB, "rss": 290 * MIB, "total_cache": 600 * MIB, "mapped_file": 500 * MIB}}}
    v2 = {"memory_stats": {"usage": 900 * MIB, "stats": {"anon": 250 * MIB, "file": 640 * MIB,
                                                          "shmem": 10 * MIB}}}
    bare = {"memory_stats": {"usage": 900 * MIB, "stats": {"cache": 700 * MIB}}}
    assert container_anon_bytes(v1) == 300 * MIB
    assert container_anon_bytes(v2) == 260 * MIB
    assert container_anon_bytes(bare) == 200 * MIB
    assert container_anon_bytes({}) is None


def test_processes_memory_is_their_resident_memory_less_file_backed_pages() -> None:
    mine = processes_anon_bytes([os.getpid()])
    rss = psutil.Process().memory_info().rss
    assert mine is not None and 0 < mine < rss
    assert processes_anon_bytes([]) is None
    assert processes_anon_bytes([2**22 + 12345]) is None  # no such process: unknown, not zero


@pytest.mark.anyio
async def test_live_view_takes_gpu_figures_from_nvml_with_our_processes_as_held() -> None:
    # NVML STAND-IN: 24 GiB GPU, 20 GiB used, 8 GiB of it by a process of our container (pid 4242).
    nvml = NvmlStandIn([FakeGpu(memory_total=24 * GIB, memory_used=20 * GIB,
                                compute=[FakeProcess(4242, 8 * GIB), FakeProcess(777, 3 * GIB)])])
    sampler = GpuSampler(nvml, container_pids=lambda: {4242})
    stats = {"memory_stats": {"usage": 500 * MIB, "stats": {"total_rss": 120 * MIB}}}
    view = LiveMemoryView(gpu_sample=sampler.sample,
                          container_stats=lambda cid: stats if cid == "c1" else None)
    snap = await view.snapshot("c1", "Old Model")
    host, gpu = snap.devices
    assert (gpu.device, gpu.free, gpu.held, gpu.after) == ("gpu0", 4 * GIB, 8 * GIB, 12 * GIB)
    assert host.device == "host" and host.held == 120 * MIB and host.free is not None and host.free > 0
    assert snap.replacing == "Old Model" and snap.n_gpus == 1
    nothing = await view.snapshot(None)
    assert nothing.devices[0].held == 0 and nothing.replacing is None


@pytest.mark.anyio
async def test_live_view_without_nvml_is_a_host_only_machine_but_a_failing_nvml_is_unknown() -> None:
    cpu_only = LiveMemoryView(gpu_sample=GpuSampler(no_library()).sample, container_stats=None)
    snap = await cpu_only.snapshot(None)
    assert [d.device for d in snap.devices] == ["host"] and snap.error is None
    broken = NvmlStandIn([FakeGpu()])
    sampler = GpuSampler(broken)

    def exploding(now: float) -> GpuSnapshot:
        raise RuntimeError("driver wedged")

    sampler._sample = exploding  # type: ignore[method-assign]  # NVML raising mid-sample
    failing = await LiveMemoryView(gpu_sample=sampler.sample, container_stats=None).snapshot(None)
    assert failing.error is not None and failing.error.startswith("GPU sampling failed")


@pytest.mark.anyio
async def test_the_board_keeps_an_estimate_until_the_model_or_flags_change_and_rejudges_when_memory_moves(
    tmp_path: Path,
) -> None:
    model = write_shaped_model(tmp_path / "m.gguf", Shape())
    conf = tmp_path / "models.conf"
    conf.write_text(f"[defaults]\nmodels_dir = {tmp_path}\n[a]\nmodel = m.gguf\nctx_size = 2048\n", "utf-8")
    profile = load_config(conf).profile("a")
    board = FitBoard()
    snap = MemorySnapshot((DeviceMemory("host", 8 * GIB),))
    await board.refresh([profile], snap)
    first = board.entry("a")
    assert first["verdict"] == "fits" and first["devices"][0]["free_bytes"] == 8 * GIB
    est = board._estimates["a"].estimate
    # memory within the band: the same verdict object, nothing recomputed
    await board.refresh([profile], MemorySnapshot((DeviceMemory("host", 8 * GIB + 1 * MIB),)))
    assert board.entry("a")["devices"][0]["free_bytes"] == 8 * GIB
    # memory moved beyond the band: judged again against the new figure
    await board.refresh([profile], MemorySnapshot((DeviceMemory("host", 10 * MIB),)))
    assert board.entry("a")["verdict"] == "wont_fit"
    assert board._estimates["a"].estimate is est
    # a new model file (mtime) or new flags: estimated again
    os.utime(model, ns=(1, 1))
    await board.refresh([profile], snap)
    assert board._estimates["a"].estimate is not est
    conf.write_text(conf.read_text("utf-8").replace("2048", "4096"), "utf-8")
    bigger = load_config(conf).profile("a")
    await board.refresh([bigger], snap)
    new_kv = board._estimates["a"].estimate
    assert new_kv is not None and new_kv.host.kv == 2 * est.host.kv  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_an_unreadable_model_is_unknown_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all")
    conf = tmp_path / "models.conf"
    conf.write_text(f"[defaults]\nmodels_dir = {tmp_path}\n"
                    "[bad]\nmodel = bad.gguf\n[gone]\nmodel = no.gguf\n", "utf-8")
    config = load_config(conf)
    board = FitBoard()
    snap = MemorySnapshot((DeviceMemory("host", 8 * GIB),))
    with anyio.fail_after(5):
        await board.refresh(config.profiles.values(), snap)
    for pid in ("bad", "gone"):
        entry = board.entry(pid)
        assert entry["verdict"] == "unknown"
        assert entry["error"].startswith("cannot read the model file"), entry
    assert board.entry("never-seen")["error"] == "not estimated yet"


@pytest.mark.anyio
async def test_a_gpus_list_is_judged_against_those_gpus_only_under_this_machines_names(
    tmp_path: Path,
) -> None:
    write_shaped_model(tmp_path / "m.gguf", Shape())
    conf = tmp_path / "models.conf"
    conf.write_text(f"[defaults]\nmodels_dir = {tmp_path}\nn_gpu_layers = 99\n"
                    "[all]\nmodel = m.gguf\n[second]\nmodel = m.gguf\ngpus = 1\n"
                    "[missing]\nmodel = m.gguf\ngpus = 3\n"
                    "[by-uuid]\nmodel = m.gguf\ngpus = GPU-8a9b3c1d-0000-0000-0000-000000000000\n", "utf-8")
    config = load_config(conf)
    board = FitBoard()
    # GPU 0 is full (another program), GPU 1 is empty: only a profile on GPU 1 fits
    snap = MemorySnapshot((DeviceMemory("host", 8 * GIB), DeviceMemory("gpu0", 1 * MIB),
                           DeviceMemory("gpu1", 8 * GIB)))
    await board.refresh(config.profiles.values(), snap)
    everywhere, second = board.entry("all"), board.entry("second")
    assert everywhere["verdict"] == "wont_fit"  # split over both GPUs: gpu0 has no room
    assert second["verdict"] == "fits", second
    assert [d["device"] for d in second["devices"]] == ["host", "gpu1"]  # the machine's name, not gpu0
    assert second["devices"][1]["free_bytes"] == 8 * GIB and "gpu1" in second["message"]
    assert board.entry("missing")["verdict"] == "unknown"
    assert "gpus = 3" in board.entry("missing")["error"] and "gpu0, gpu1" in board.entry("missing")["error"]
    assert board.entry("by-uuid")["verdict"] == "unknown" and "UUID" in board.entry("by-uuid")["error"]
