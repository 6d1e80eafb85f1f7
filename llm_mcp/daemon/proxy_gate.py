"""Load on demand: which profile a request names, and its server once it is ready.

A request for a ready model goes straight through (even while another model loads);
one for a model that is not ready asks the scheduler to ensure it and waits, in a
bounded queue per model, for at most the queue timeout. A model that a job in flight
is about to stop counts as not ready: new requests wait for the next load instead of
stretching the drain of the old one. A load that would stop a model still busy with
requests waits for that model's turn first (as long as its own load took, at most a
minute: Core.turn_left), so clients wanting conflicting models take turns instead of
swapping models for every request.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from llm_mcp.config.models_conf import Config, Profile
from llm_mcp.config.proxy_conf import ProxySettings
from llm_mcp.core.jobs import Job, SwitchError, SwitchRefused
from llm_mcp.core.requests import RequestBook
from llm_mcp.core.scheduler import TURN_MAX
from llm_mcp.daemon.proxy_errors import ProxyError
from llm_mcp.hardware.fit_settings import SettingsError, settings_from_args
from llm_mcp.runtime.failure_lines import relevant_first

__all__ = ["Gate", "Scheduler", "Target"]

PROGRESS_EVERY = 1.0  # seconds between two loading-state reports
TURN_POLL = 0.25  # seconds between two looks at the turns a load waits for
DEFAULT_SLOTS = 4  # llama-server's --parallel when not given ("auto")
MAX_IDLE = 64  # idle connections kept to one model's server, whatever its --parallel says
LOG_LINES = 12  # of a failed load, most telling first


class Scheduler(Protocol):
    """The parts of core.scheduler.Core the endpoint uses."""

    requests: RequestBook

    def config(self) -> Config: ...
    def status(self) -> dict[str, Any]: ...
    def ready_endpoint(self, model: str) -> str | None: ...
    def turn_left(self, model: str) -> float: ...
    async def ensure(self, model: str, *, force: bool = False, rollback: bool = True) -> Job: ...


@dataclass(frozen=True, slots=True)
class Target:
    model: str  # the profile id
    profile: Profile

    @property
    def idle_limit(self) -> int:
        """Idle connections the endpoint may keep open to this model's server between requests."""
        return idle_limit(tuple(self.profile.server_args()))


@functools.lru_cache(maxsize=256)
def idle_limit(args: tuple[str, ...]) -> int:
    """As many as the server has slots (`--parallel`, 4 by default).

    llama-server answers HTTP on max(slots + 2, CPUs - 1) threads (`--threads-http` sets
    another number) and a kept-alive connection holds one of them while idle. Kept per slot,
    the two threads llama-server adds for /health and /slots stay free; kept fewer than the
    requests that come together, each batch opens new connections, which adds milliseconds
    to their first token (16 streams on the real llama-server with 16 slots: +21 ms over
    direct with 8 kept, +2.5 ms with 16).
    """
    try:
        slots = settings_from_args(args).n_parallel
    except SettingsError:
        slots = DEFAULT_SLOTS
    if slots <= 0:  # -1: "auto"
        slots = DEFAULT_SLOTS
    pairs = [a.split("=", 1) if a.startswith("--threads-http=") else [a, b] for a, b in
             itertools.pairwise([*args, ""])]
    for flag, value in pairs:
        if flag == "--threads-http" and value.isdigit() and int(value) > 0:
            slots = min(slots, int(value) - 2)
    return max(0, min(slots, MAX_IDLE))


Progress = Callable[[Job | None, float], Awaitable[None]]  # (the load, seconds waited so far)


class Gate:
    def __init__(self, core: Scheduler, settings: Callable[[], ProxySettings]) -> None:
        self.core = core
        self.settings = settings
        self._config: tuple[Config, tuple[int, int]] | None = None  # and the file's (mtime_ns, size)

    def config(self) -> Config:
        """models.conf now; a ProxyError (500, config_error) while it does not parse.

        Read again only when the file's mtime or size changed: reading it costs about a
        millisecond, a stat a few microseconds, and every request asks.
        """
        cached = self._config
        if cached is not None:
            try:
                st = os.stat(cached[0].path)
                if (st.st_mtime_ns, st.st_size) == cached[1]:
                    return cached[0]
            except OSError:
                pass
        try:
            config = self.core.config()
            st = os.stat(config.path)
            self._config = (config, (st.st_mtime_ns, st.st_size))
            return config
        except Exception as exc:
            self._config = None
            raise ProxyError(500, "config_error", f"models.conf cannot be read: {exc}",
                             hint="fix models.conf (`llm-mcp check` says where); the running models "
                             "go on", retry=False) from None

    def resolve(self, name: object) -> Target:
        """The profile a `model` field names (its id or an alias); 404 with the valid names."""
        config = self.config()
        if isinstance(name, str):
            if name in config.profiles:
                return Target(name, config.profiles[name])
            for profile in config.profiles.values():
                if name in profile.aliases:
                    return Target(profile.id, profile)
        valid = [n for p in config.profiles.values() for n in (p.id, *p.aliases)]
        if not isinstance(name, str) or not name:
            raise ProxyError(400, "model_required", 'the request needs "model": a model id or alias',
                             hint=f"valid: {', '.join(valid)}", valid=valid, retry=False)
        raise ProxyError(404, "unknown_model", f"unknown model '{name}'",
                         hint=f"valid: {', '.join(valid)} (GET /v1/models lists them)", valid=valid,
                         retry=False)

    def ready_endpoint(self, model: str) -> str | None:
        """The model's server when it is ready and no job in flight is about to stop it."""
        return self.core.ready_endpoint(model)

    async def wait_ready(self, target: Target, progress: Progress | None = None) -> str:
        """Ensure the model and wait for it in its queue; its endpoint, or a ProxyError."""
        endpoint = self.ready_endpoint(target.model)
        if endpoint is not None:
            return endpoint
        settings = self.settings()
        requests = self.core.requests
        if requests.queued(target.model) >= settings.queue_limit:
            raise ProxyError(503, "queue_full", f"{settings.queue_limit} requests already wait for "
                             f"'{target.model}' to load", hint="retry later, or raise [proxy] queue_limit",
                             retry=True, retry_after=5)
        limit = settings.wait_limit(target.profile.load_timeout)
        started = time.monotonic()
        deadline = started + limit
        turns = TURN_MAX  # waiting for turns does not count against the queue timeout, up to this long
        with requests.waiting(target.model):
            while (endpoint := self.ready_endpoint(target.model)) is None:
                waited = await self._await_turns(target.model, turns, started, progress)
                deadline, turns = deadline + waited, turns - waited
                job = await self._ensure(target.model)
                finished_at_once = job.done.is_set()
                await self._wait_job(job, deadline, started, progress)
                if not job.done.is_set():
                    raise ProxyError(503, "queue_timeout", f"'{target.model}' was not ready after "
                                     f"{limit:g} s", hint="the load goes on; retry, or raise [proxy] "
                                     "queue_timeout", retry=True, retry_after=_remaining(job),
                                     phase=job.phase)
                if job.profile == target.model and job.kind == "switch" and job.result == "failed":
                    raise _load_failed(target.model, job)
                if finished_at_once:  # an answer without a load (already ready, or refused): no spin
                    await anyio.sleep(0.05)
        return endpoint

    async def _await_turns(self, model: str, budget: float, started: float, progress: Progress | None
                           ) -> float:
        """Wait (at most `budget` seconds) while the models this load would stop are in their turn
        (Core.turn_left), looking again every TURN_POLL seconds: a turn ends early when its model
        goes idle. Loading-state streams hear of it every PROGRESS_EVERY. Returns the time waited."""
        began = reported = time.monotonic()
        while (left := self.core.turn_left(model)) > 0 and (now := time.monotonic()) - began < budget:
            if progress is not None and now - reported >= PROGRESS_EVERY:
                reported = now
                await progress(None, now - started)
            await anyio.sleep(min(left, TURN_POLL, budget - (now - began)))
        return time.monotonic() - began

    async def _ensure(self, model: str) -> Job:
        """The job that makes the model ready, or the one in the way (wait for it, then try again)."""
        try:
            return await self.core.ensure(model)
        except SwitchRefused as refused:
            return refused.job
        except SwitchError as exc:  # WontFit included: 507, nothing was stopped
            status = {"unknown_model": 404, "wont_fit": 507}.get(exc.reason, 500)
            raise ProxyError(status, exc.reason, str(exc), hint=exc.hint or None, valid=exc.valid,
                             retry=False) from None

    @staticmethod
    async def _wait_job(job: Job, deadline: float, started: float, progress: Progress | None) -> None:
        while not job.done.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if progress is not None:
                await progress(job, now - started)
            with anyio.move_on_after(min(PROGRESS_EVERY, deadline - now)):
                await job.done.wait()


def _remaining(job: Job) -> float:
    if job.estimate is None:
        return 5.0
    return max(1.0, math.ceil(job.estimate - job.elapsed()))


def _load_failed(model: str, job: Job) -> ProxyError:
    failure = job.failure
    reason = failure.reason if failure is not None else "load_failed"
    message = failure.message if failure is not None else (job.detail or "the load failed")
    restored = " (the model before it was restored)" if job.restored else ""
    return ProxyError(503, reason, f"loading '{model}' failed: {message}{restored}",
                      hint=failure.hint if failure is not None else None,
                      log_lines=relevant_first(job.log_lines)[:LOG_LINES], retry=False, job=job.id,
                      restored=job.restored)
