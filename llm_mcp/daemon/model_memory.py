"""How much memory each running model holds, for `ps` and status: one number per model.

The GPU memory of its container's processes (NVML, the last GPU sample), else their
resident memory on this host. Looking costs a `docker top` per container, so it runs in
the background at most every few seconds and only while someone reads status; status
itself only reads the last numbers (status with 8 models stays ~1 ms). Models on other
engines have no number: their processes are not on this host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio

from llm_mcp.core.memory_view import processes_anon_bytes

log = logging.getLogger("llm_mcp.daemon.model_memory")

MIB = 1024 * 1024


def gpu_bytes(snapshot: Mapping[str, Any] | None, pids: Iterable[int]) -> int | None:
    """GPU memory the processes use, summed over every GPU; None when NVML lists none of them."""
    if not snapshot or not snapshot.get("available"):
        return None
    wanted = set(pids)
    total, seen = 0.0, False
    for gpu in snapshot.get("gpus", []):
        for proc in gpu.get("processes", []):
            if proc.get("pid") in wanted and proc.get("used_mib") is not None:
                total += float(proc["used_mib"])
                seen = True
    return round(total * MIB) if seen else None


class ModelMemory:
    def __init__(self, containers: Callable[[], Mapping[str, str]], pids: Callable[[str], set[int]],
                 last_gpu: Callable[[], Mapping[str, Any] | None], *, interval: float = 5.0) -> None:
        self._containers = containers  # model -> container id, local engine only
        self._pids = pids  # blocking (docker top)
        self._last_gpu = last_gpu
        self.interval = interval
        self._bytes: dict[str, int | None] = {}
        self._wanted = anyio.Event()
        self._asked_at = 0.0
        self._threads = anyio.CapacityLimiter(1)

    def get(self, model: str) -> int | None:
        """The last number (None until the first look); asking keeps the looks going."""
        self._asked_at = time.monotonic()
        self._wanted.set()
        return self._bytes.get(model)

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            if time.monotonic() - self._asked_at > 30:  # nobody reads status: stop looking
                self._wanted = anyio.Event()
                continue
            try:
                await self._look()
            except Exception:  # a number missing from ps is no reason to end the daemon
                log.exception("reading the models' memory failed")
            await anyio.sleep(self.interval)

    async def _look(self) -> None:
        found: dict[str, int | None] = {}
        snapshot = self._last_gpu()
        for model, container_id in self._containers().items():
            try:
                pids = await anyio.to_thread.run_sync(self._pids, container_id, limiter=self._threads)
            except Exception:  # the container went, or the engine did: no number this time
                found[model] = None
                continue
            found[model] = gpu_bytes(snapshot, pids)
            if found[model] is None:
                found[model] = processes_anon_bytes(pids)
        self._bytes = found
