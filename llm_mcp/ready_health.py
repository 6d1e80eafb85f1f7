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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from llm_mcp.health import Health, LlamaServerProbe

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
        out["message"] = f"llama-server does not answer /health ({seen}) although its container runs"
        out["hint"] = ("it may be hung or stopped (SIGSTOP) or overloaded; it is left running: wait, "
                       "or switch to the model again to restart it")
    return out


async def watch(probe: LlamaServerProbe, tracker: HealthTracker, *, interval: float,
                alive: Callable[[], bool], on_change: Callable[[], Awaitable[None]]) -> None:
    """Poll until `alive()` is false; call on_change() whenever the reported health changes."""
    try:
        while alive():
            await anyio.sleep(interval)
            if not alive():
                return
            if tracker.observe(await probe.health()):
                await on_change()
    finally:
        await probe.aclose()
