"""What the scheduler keeps per model (a Slot) and per Docker engine (an Engine)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from llm_mcp.config.models_conf import Profile
from llm_mcp.core.engine_link import EngineLink
from llm_mcp.core.jobs import Job
from llm_mcp.core.ready_health import ReadyHealth
from llm_mcp.core.supervisor import Supervisor
from llm_mcp.core.transitions import State
from llm_mcp.runtime.base import Runtime
from llm_mcp.runtime.health import Health

LOCAL = "local"  # the engine of a config without [engine NAME] sections


@dataclass(eq=False)
class Slot:
    """One model the scheduler runs (or ran last): its state and its container's supervisor.

    A slot without a container stays only to say why (failed, stopped outside
    llm-mcp) until the next job that touches the model or a conflicting one.
    """

    model: str
    profile: Profile | None
    engine: str
    ready_health: ReadyHealth
    order: int  # start order, for status listings
    state: State = State.STOPPED
    reason: str | None = None
    hint: str | None = None
    code: str | None = None
    since: float = field(default_factory=time.time)
    sup: Supervisor | None = None
    health: Health | None = None  # the last /health answer while loading
    measured_tps: float | None = None
    speed_source: str | None = None
    stale_config: bool = False
    port: int | None = None
    last_job: Job | None = None
    ready_at: float = 0.0  # the scheduler's clock when it last became ready (the ttl counts from there)
    starting_at: float | None = None  # the scheduler's clock when its container last started
    load_seconds: float | None = None  # from that start to ready (None: adopted, or never loaded here)

    @property
    def name(self) -> str:
        return self.profile.name if self.profile is not None else self.model

    @property
    def has_container(self) -> bool:
        return self.sup is not None

    def health_status(self) -> str | None:
        if self.state == State.READY and self.ready_health.status is not None:
            return self.ready_health.status
        return None if self.health is None else self.health.status


@dataclass(eq=False)
class Engine:
    """One Docker engine the config names, and whether it answers."""

    name: str
    runtime: Runtime
    link: EngineLink
    events_stop: threading.Event = field(default_factory=threading.Event)


def round1(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def client_host(host: str) -> str:
    """Where this machine reaches a port published on `host` (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
