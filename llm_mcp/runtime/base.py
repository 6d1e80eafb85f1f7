"""What the lifecycle core needs from a container runtime, and how a runtime fails.

The core never sees a third-party exception: an adapter (docker_engine.DockerRuntime,
and the in-memory stand-in of runtime.memory) translates every error of its engine
into the types below, in one place, the way httpx maps its transports'. Every method
is blocking, and bounded in time; the core calls them from worker threads.

One runtime talks to one engine (a Docker Engine: local socket, tcp:// or ssh://);
several engines are several runtimes, each knowing its engine's name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llm_mcp.config.compose import LABEL_ENGINE, ContainerSpec
from llm_mcp.config.engines import LOCAL
from llm_mcp.runtime.log_signals import Failure

__all__ = ["DEFAULT_ENGINE", "LABEL_ENGINE", "ContainerGone", "ContainerInfo", "DockerUnavailable",
           "EngineUnavailable", "Runtime", "RuntimeFailure", "StartError"]

# LABEL_ENGINE says which engine a container was started on. Containers of the single-engine
# version have no such label; they ran on the local engine, so that is what its absence means.
DEFAULT_ENGINE = LOCAL
SERVER_PORT = "8080/tcp"  # llama-server's port inside the container (compose/compose.yaml)


class RuntimeFailure(Exception):
    """The runtime failed an operation for a reason of its own (not an outage, not a gone container)."""


class EngineUnavailable(RuntimeFailure):
    """The engine does not answer (its socket is gone, refused, or timed out). It may come back.

    The message is a sentence for the user; `hint` says what to do; `detail` keeps the
    engine's own words for the log.
    """

    def __init__(self, message: str, *, hint: str = "", detail: str = "", engine: str = DEFAULT_ENGINE,
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.engine = engine  # the engine's name, as in models.conf


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
    engine: str = DEFAULT_ENGINE  # the engine it runs on (its label; "local" when unlabelled)
    host_port: int | None = None  # the host port published for llama-server; None when none is
    finished_at: float | None = None  # when it last stopped (wall clock); None while it never has

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        """Alive as far as the core is concerned: a paused container still holds its model."""
        return self.status in ("running", "paused")


class Runtime(Protocol):
    """The container operations of the core; only our own (labelled) containers are visible.

    Any method may raise EngineUnavailable; the others say per method. No call blocks
    for long on an engine that stopped answering: ping answers within 2 s, others
    within their own timeouts; `wait`, `follow_logs` and `events` end on their events.
    """

    @property
    def engine(self) -> str:
        """The engine's name (models.conf `[engine NAME]`; "local" for the default one)."""

    @property
    def host(self) -> str:
        """Where the engine is (its URL: unix://..., tcp://..., ssh://...), for messages."""

    def published_host(self, bind_ip: str) -> str:
        """The host name to reach a port this engine publishes on `bind_ip`, from this machine."""

    def ping(self) -> None:
        """Return when the engine answers; raise EngineUnavailable (quickly) when not."""

    def managed(self) -> list[ContainerInfo]:
        """Our containers in any state, newest first."""

    def inspect(self, container_id: str) -> ContainerInfo | None:
        """The container now, or None when it does not exist (or is not ours)."""

    def image_present(self, image: str) -> bool:
        """Whether the engine has the image."""

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start one container; raise StartError when the engine refuses.

        The container is labelled with this runtime's engine. A published host port 0
        means any free port: the engine picks one, and `host_port` tells which.
        """

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

    def memory_stats(self, container_id: str) -> dict[str, Any] | None:
        """A quick one-shot sample (no CPU figures) in `docker stats` form, or None; never raises."""

    def container_pids(self, container_id: str) -> set[int]:
        """Host PIDs of the container's processes (to attribute GPU memory); empty if unknown."""

    def close(self) -> None:
        """Let go of the engine's connections (an engine no longer configured); never raises."""
