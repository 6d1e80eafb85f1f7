"""Switch jobs and the states they move the core through: pure data, no I/O.

A job is owned by the core, not by whoever asked for it, so it can be joined,
refused, replaced (force) or left running by a caller that went away.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from llm_mcp.core.load_history import progress_fraction
from llm_mcp.core.transitions import State
from llm_mcp.runtime.log_signals import Failure

__all__ = ["Job", "State", "SwitchError", "SwitchRefused"]


class SwitchRefused(Exception):
    """Another switch is in flight and the request did not say force."""

    def __init__(self, job: Job) -> None:
        self.job = job
        what = {"bench": f"a bench (now at '{job.profile}')", "stop": "stopping every model",
                "unload": f"stopping '{job.profile}'", "adopt": f"the load of '{job.profile}'"}.get(
                    job.kind, f"a switch to '{job.profile}'")
        super().__init__(f"{what} is in progress (job {job.id}, phase {job.phase}); wait for it, "
                         "or pass force to replace it")


class SwitchError(Exception):
    """The request itself is wrong (unknown profile, broken config)."""

    def __init__(self, message: str, *, reason: str, hint: str = "", valid: list[str] | None = None):
        self.reason = reason
        self.hint = hint
        self.valid = valid or []
        super().__init__(message)


_job_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    kind: str  # "switch" | "stop" (all) | "unload" (one) | "adopt" | "bench" | "crash"
    profile: str | None
    profile_name: str
    force: bool
    rollback: bool
    previous: str | None
    estimate: float | None
    id: str = field(default_factory=lambda: f"job-{int(time.time())}-{next(_job_ids)}")
    created_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    phase: str = "queued"
    phases: list[dict[str, Any]] = field(default_factory=list)
    result: str | None = None  # ready | failed | cancelled | stopped
    failure: Failure | None = None
    detail: str = ""
    log_lines: list[str] = field(default_factory=list)
    restored: bool | None = None
    replaced_by: str | None = None
    duration: float | None = None
    load_seconds: float | None = None
    bench: dict[str, Any] | None = None  # a bench job's profiles, settings, step and results so far
    engine: str = "local"
    stops: list[str] = field(default_factory=list)  # running models it stops (they conflict)
    # Every model this job may change: its target and what it stops. Two jobs whose claims
    # conflict never run at once (the scheduler joins, refuses or cancels).
    claims: set[str] = field(default_factory=set)
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def elapsed(self) -> float:
        return self.duration if self.duration is not None else time.monotonic() - self.started

    def progress(self) -> float | None:
        if self.result == "ready":
            return 1.0
        return progress_fraction(self.elapsed(), self.estimate)

    def to_dict(self) -> dict[str, Any]:
        fraction = self.progress()
        return {
            "id": self.id, "kind": self.kind, "profile": self.profile, "name": self.profile_name,
            "phase": self.phase, "phases": list(self.phases), "elapsed": round(self.elapsed(), 3),
            "estimate": self.estimate, "progress": None if fraction is None else round(fraction, 3),
            "force": self.force, "rollback": self.rollback, "previous": self.previous,
            "result": self.result, "done": self.done.is_set(),
            "reason": self.failure.reason if self.failure else None,
            "message": self.failure.message if self.failure else None,
            "hint": self.failure.hint if self.failure else None,
            "detail": self.detail, "log_lines": list(self.log_lines), "restored": self.restored,
            "replaced_by": self.replaced_by, "load_seconds": self.load_seconds,
            "created_at": self.created_at, "bench": self.bench, "engine": self.engine,
            "stops": list(self.stops),
        }
