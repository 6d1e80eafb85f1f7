"""A cheap health watch on a ready container: one /health GET every few seconds.

Without it a paused (`docker pause`) or hung (SIGSTOP) llama-server stays
"ready, health ok" forever, because /health is only polled while loading.

Decision: unresponsiveness changes `health`, never the state. The state stays
`ready` (the model is still loaded, and a pause may be deliberate or a long
stall may end), the health says `unresponsive` with since when and why, and the
hint says what to do; llm-mcp never restarts or removes the container on its
own, since that would throw away a load of minutes for what may be a pause. It
goes back to `ok` when the server answers again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from llm_mcp.runtime.base import ContainerInfo, RuntimeFailure
from llm_mcp.runtime.health import Health, Probe

OK = "ok"
UNRESPONSIVE = "unresponsive"


@dataclass
class HealthTracker:
    """Turns single probes into a reported health: `misses` failed polls in a row are unresponsive."""

    misses: int = 2
    status: str = OK
    since: float = field(default_factory=time.time)
    last: Health | None = None
    _missed: int = 0

    def observe(self, health: Health, now: float | None = None) -> bool:
        """Record one probe; True when the reported status changed."""
        self.last = health
        if health.status == OK:
            self._missed = 0
            new = OK
        else:
            self._missed += 1
            new = UNRESPONSIVE if self._missed >= self.misses else self.status
        if new == self.status:
            return False
        self.status, self.since = new, time.time() if now is None else now
        return True


def describe(tracker: HealthTracker, container_status: str | None, container: str) -> dict[str, Any]:
    """What status shows about health: the status, since when, and in words why and what to do."""
    out: dict[str, Any] = {"status": tracker.status, "since": tracker.since, "message": None, "hint": None}
    if tracker.status == OK:
        return out
    last = tracker.last
    seen = "no answer" if last is None or last.code is None else f"HTTP {last.code}"
    if container_status == "paused":
        out["message"] = "the container is paused: llama-server cannot answer /health"
        out["hint"] = f"`docker unpause {container}` to resume it, or switch to a model to replace it"
    else:
        runs = " although its container runs" if container_status == "running" else ""
        out["message"] = f"llama-server does not answer /health ({seen}){runs}"
        out["hint"] = ("it may be hung or stopped (SIGSTOP) or overloaded; it is left running: wait, "
                       "or switch to the model again to restart it")
    return out


class ReadyHealth:
    """The health watch of the core's one ready container (none while not ready)."""

    def __init__(self, interval: float, inspect: Callable[[str], ContainerInfo | None],
                 limiter: anyio.CapacityLimiter | None = None) -> None:
        self.interval = interval
        self._inspect = inspect
        self._limiter = limiter
        self.tracker: HealthTracker | None = None
        self._container = ""
        # What status shows, set together once Docker was asked whether the container is paused:
        # the tracker turns unresponsive first, and "unresponsive" without the why in between
        # would be read (and was, by a test on a busy machine) as a hung server.
        self._status: str | None = None
        self._detail: dict[str, Any] | None = None

    def start(self, tg: anyio.abc.TaskGroup, probe: Probe, container: ContainerInfo, *,
              alive: Callable[[], bool], on_change: Callable[[], None]) -> None:
        self.tracker = tracker = HealthTracker()
        self._container = container.short_id
        self._status, self._detail = tracker.status, describe(tracker, None, self._container)
        tg.start_soon(self._run, probe, tracker, container.id, alive, on_change)

    def stop(self) -> None:
        self.tracker = None

    @property
    def status(self) -> str | None:
        return None if self.tracker is None else self._status

    def detail(self) -> dict[str, Any] | None:
        return None if self.tracker is None else self._detail

    async def _run(self, probe: Probe, tracker: HealthTracker, container_id: str,
                   alive: Callable[[], bool], on_change: Callable[[], None]) -> None:
        def watching() -> bool:
            return self.tracker is tracker and alive()

        try:
            while watching():
                await anyio.sleep(self.interval)
                if not watching() or not tracker.observe(await probe.health()):
                    continue
                status = None
                if tracker.status != OK:  # paused or hung? Docker knows "paused"
                    try:
                        info = await anyio.to_thread.run_sync(self._inspect, container_id,
                                                              limiter=self._limiter)
                        status = info.status if info else None
                    except RuntimeFailure:
                        pass
                if watching():
                    self._status, self._detail = tracker.status, describe(tracker, status, self._container)
                    on_change()
        finally:
            await probe.aclose()
