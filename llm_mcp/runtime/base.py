"""What the lifecycle core needs from a container runtime, and how a runtime fails.

The core never sees a third-party exception: an adapter (docker_runtime.DockerRuntime
today; an in-memory runtime for fast scheduling tests next) translates every error
of its engine into the types below, in one place, the way httpx maps its transports'.
Every method is blocking; the core calls them from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llm_mcp.config.compose import ContainerSpec
from llm_mcp.runtime.log_signals import Failure

__all__ = ["ContainerGone", "ContainerInfo", "DockerUnavailable", "EngineUnavailable", "Runtime",
           "RuntimeFailure", "StartError"]


class RuntimeFailure(Exception):
    """The runtime failed an operation for a reason of its own (not an outage, not a gone container)."""


class EngineUnavailable(RuntimeFailure):
    """The engine does not answer (its socket is gone, refused, or timed out). It may come back.

    The message is a sentence for the user; `hint` says what to do; `detail` keeps the
    engine's own words for the log.
    """

    def __init__(self, message: str, *, hint: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail


DockerUnavailable = EngineUnavailable  # the name the rest of llm-mcp and its docs use


class ContainerGone(RuntimeFailure):
    """The container does not exist (any more): removed, by us or by someone else."""


class StartError(RuntimeFailure):
    """The engine refused to create or start a container; `failure` says why, for the user."""

    def __init__(self, failure: Failure, detail: str) -> None:
        self.failure = failure
        self.detail = detail
        super().__init__(f"{failure.message}: {detail}")


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | exited | dead | removing | paused | restarting
    profile: str
    config_hash: str
    image: str
    started_at: float | None
    exit_code: int | None
    oom_killed: bool
    pid: int | None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        """Alive as far as the core is concerned: a paused container still holds its model."""
        return self.status in ("running", "paused")


class Runtime(Protocol):
    """The container operations of the core; only our own (labelled) containers are visible.

    Any method may raise EngineUnavailable; the others say per method.
    """

    def ping(self) -> None:
        """Return when the engine answers; raise EngineUnavailable (quickly) when not."""

    def managed(self) -> list[ContainerInfo]:
        """Our containers in any state, newest first."""

    def inspect(self, container_id: str) -> ContainerInfo | None:
        """The container now, or None when it does not exist (or is not ours)."""

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start one container; raise StartError when the engine refuses."""

    def stop_and_remove(self, container_id: str, grace: float) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds, remove; the exit code (None if it was gone)."""

    def wait(self, container_id: str, cancel: threading.Event | None = None) -> ContainerInfo | None:
        """Block until the container stops (its final state) or is removed (None), or `cancel`."""

    def follow_logs(self, container_id: str, on_line: Callable[[str, str], None],
                    stop: threading.Event, since: float | None = None) -> None:
        """on_line(timestamp, text) per line until the container stops or `stop` is set."""

    def events(self, on_event: Callable[[str, str], None], stop: threading.Event) -> None:
        """on_event(action, container_id) for our containers until `stop` or the stream ends."""

    def stats(self, container_id: str) -> dict[str, Any] | None:
        """One resource sample in `docker stats` form, or None when there is none."""

    def container_pids(self, container_id: str) -> set[int]:
        """Host PIDs of the container's processes (to attribute GPU memory); empty if unknown."""
