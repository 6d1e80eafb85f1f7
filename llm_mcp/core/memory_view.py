"""Where the pre-flight's memory figures come from: the "memory view" handed to the core.

``MemoryView.snapshot(container_id, name)`` answers free memory per device now, and
what the container a switch would replace holds there (llm_mcp.core.preflight adds the two).
``LiveMemoryView`` is the daemon's: GPUs from an NVML sample (gpu.GpuSampler marks the
processes of our container as ``ours``), the host from psutil's MemAvailable, and the
replaced container's host memory from its processes' anonymous memory (psutil on the
host PIDs Docker names), or Docker's stats when those cannot be read (a remote engine).
Tests hand the core this same class over an NVML stand-in, or any object with a
``snapshot`` coroutine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import anyio
import psutil

from llm_mcp.core.preflight import DeviceMemory, MemorySnapshot
from llm_mcp.hardware.gpu import GpuSnapshot

__all__ = ["LiveMemoryView", "MemoryView", "container_anon_bytes", "processes_anon_bytes"]

log = logging.getLogger("llm_mcp.core.memory_view")

MiB = 1 << 20
SAMPLING_FAILED = "GPU sampling failed"  # gpu.GpuSampler's reason when NVML itself raised


class MemoryView(Protocol):
    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        """Free bytes per device now, and what ``container_id`` (the one a switch replaces) holds."""


def container_anon_bytes(stats: Mapping[str, Any]) -> int | None:
    """The memory a container frees when it stops, from a Docker stats document.

    Only anonymous memory: its file pages (the mmapped model) are page cache, which the
    kernel already counts in MemAvailable; adding them again would count them twice.
    cgroup v2 says ``anon``, v1 ``total_rss`` / ``rss``; else usage minus the page cache.
    """
    memory = stats.get("memory_stats")
    if not isinstance(memory, Mapping):
        return None
    detail = memory.get("stats") if isinstance(memory.get("stats"), Mapping) else {}
    assert isinstance(detail, Mapping)
    for key in ("anon", "total_rss", "rss"):
        value = detail.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value + _int(detail.get("total_shmem", detail.get("shmem")))
    usage = memory.get("usage")
    if not isinstance(usage, int) or isinstance(usage, bool):
        return None
    cache = _int(detail.get("file", detail.get("total_cache", detail.get("cache"))))
    return max(0, usage - cache)


def processes_anon_bytes(pids: Iterable[int], psutil_module: Any = psutil) -> int | None:
    """Resident anonymous memory of these host processes (rss minus file-backed and shared
    pages: the mmapped model is page cache, counted in MemAvailable already); None when
    none of them can be read (not on this host, gone, not permitted)."""
    total, seen = 0, False
    for pid in pids:
        info = _memory_info(psutil_module, pid)
        if info is None:
            continue
        seen = True
        total += max(0, int(info.rss) - int(getattr(info, "shared", 0)))
    return total if seen else None


def _memory_info(psutil_module: Any, pid: int) -> Any:
    try:
        return psutil_module.Process(pid).memory_info()
    except Exception:  # psutil.Error (gone, denied) or anything odd: that process is unknown
        return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class LiveMemoryView:
    """GPU figures from ``gpu_sample`` (GpuSampler.sample; its ``ours`` processes are the
    replaced container's), host figures from psutil: MemAvailable, and the anonymous memory
    of the container's processes (``container_pids``, e.g. DockerRuntime.container_pids, ~20
    ms); ``container_stats`` (a Docker stats document, e.g. DockerRuntime.memory_stats) only
    when those processes cannot be read: Docker 20.10 answers a one-shot stats call in up to
    a second, too slow for a refusal that must come back in 100 ms. Every call blocks, so
    each runs in a worker thread; the GPU and the container are asked at the same time."""

    def __init__(
        self,
        *,
        gpu_sample: Callable[[], GpuSnapshot] | None,
        container_pids: Callable[[str], set[int]] | None = None,
        container_stats: Callable[[str], Mapping[str, Any] | None] | None = None,
        psutil_module: Any = psutil,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._gpu_sample = gpu_sample
        self._container_pids = container_pids
        self._container_stats = container_stats
        self._psutil = psutil_module
        self._limiter = limiter or anyio.CapacityLimiter(4)

    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        gpus: list[GpuSnapshot | None] = [None]
        held_host: list[int | None] = [None]

        async def gpu() -> None:
            if self._gpu_sample is not None:
                gpus[0] = await anyio.to_thread.run_sync(self._gpu_sample, limiter=self._limiter,
                                                         abandon_on_cancel=True)

        async def container() -> None:
            if container_id is not None:
                held_host[0] = await anyio.to_thread.run_sync(self._held_host, container_id,
                                                              limiter=self._limiter, abandon_on_cancel=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(gpu)
            tg.start_soon(container)
        available = self._host_available()
        devices = [DeviceMemory("host", available, held_host[0] or 0)]
        error = None
        snap = gpus[0]
        if snap is not None and snap.available:
            for g in snap.gpus:
                total, used = g.memory_total_mib, g.memory_used_mib
                free = None if total is None or used is None else int((total - used) * MiB)
                ours = sum(p.used_mib or 0 for p in g.processes if p.ours)
                devices.append(DeviceMemory(f"gpu{g.index}", free, int(ours * MiB)))
        elif snap is not None and (snap.reason or "").startswith(SAMPLING_FAILED):
            # GPUs may be there but unreadable: a host-only estimate would refuse wrongly.
            error = snap.reason
        # No NVML library, or no GPU: a CPU machine; llama-server puts everything on the host.
        return MemorySnapshot(tuple(devices), replacing=name if container_id else None, error=error,
                              taken_at=time.time())

    def _held_host(self, container_id: str) -> int | None:
        if self._container_pids is not None:
            held = processes_anon_bytes(self._container_pids(container_id), self._psutil)
            if held is not None:
                return held
        if self._container_stats is not None:
            stats = self._container_stats(container_id)
            return None if stats is None else container_anon_bytes(stats)
        return None

    def _host_available(self) -> int | None:
        try:
            return int(self._psutil.virtual_memory().available)
        except Exception as exc:  # a figure we cannot read is unknown, never a crash
            log.warning("psutil.virtual_memory failed: %s", exc)
            return None
