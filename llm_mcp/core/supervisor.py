"""One supervisor per running container: what it prints, whether it still runs.

A supervisor only observes (log lines, load phases, known failures, the exit);
it never changes a model's state. It reports to the scheduler, which applies
what it hears through the transition table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from llm_mcp.config.models_conf import Profile
from llm_mcp.core.line_feed import LineFeed
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable, Runtime, RuntimeFailure
from llm_mcp.runtime.log_signals import (
    Failure,
    match_failure,
    match_generation_speed,
    match_offload,
    match_phase,
)

log = logging.getLogger("llm_mcp.supervisor")


@dataclass(eq=False)
class Supervisor:
    """Everything observed about one running container, and the two threads that observe it."""

    container: ContainerInfo
    profile: Profile | None
    model: str  # the profile id (or the label of a container whose profile left models.conf)
    engine: str
    progress_at: float = 0.0  # the scheduler's clock at the last sign of progress
    stop: threading.Event = field(default_factory=threading.Event)
    phase: str | None = None
    failure: Failure | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)
    logs_done: anyio.Event = field(default_factory=anyio.Event)  # the log stream ended
    final: ContainerInfo | None = None
    expected_exit: bool = False
    removed: bool = False  # Docker said it was destroyed
    failure_ignored: bool = False  # a failure-looking line that did not end the server
    watch_failures: bool = True  # off once ready: a scary line after that is not a failed load
    offload: tuple[int, int] | None = None
    last_tps: float | None = None  # the newest generation speed the server printed
    replayed: set[tuple[str, str]] = field(default_factory=set)  # lines restored after a restart
    detached: bool = False  # its engine went away: the threads ended; re-attached when it answers
    feed: LineFeed = field(default_factory=LineFeed)

    @property
    def id(self) -> str:
        return self.container.id

    def observe_line(self, text: str, now: float) -> None:
        """Update what the line tells (phase, failure, offload, speed)."""
        self.progress_at = now
        phase = match_phase(text)
        if phase:
            self.phase = phase
        if self.failure is None and not self.failure_ignored and self.watch_failures:
            self.failure = match_failure(text)
        offload = match_offload(text)
        if offload:
            self.offload = offload
        tps = match_generation_speed(text)
        if tps is not None:
            self.last_tps = tps

    async def settle(self) -> None:
        """Let the exit and the last log lines arrive before quoting them.

        Docker reports the exit and streams the log on separate connections: the
        exit often lands first, before the line that says why.
        """
        with anyio.move_on_after(2):
            await self.exited.wait()
        if self.exited.is_set():
            with anyio.move_on_after(1):
                await self.logs_done.wait()

    async def caught_up(self, timeout: float = 1.0) -> None:
        """Before reporting ready: let the lines already printed reach the log.

        /health can answer 200 before the follower delivered the last load lines, and a
        tail_logs right after the switch would miss them. Done when the server said it
        is loaded (or the stream went quiet) and the follower handed over all it had.
        """
        with anyio.move_on_after(timeout):
            while not (self.feed.empty() and (self.phase in ("model_loaded", "listening")
                                              or self.feed.quiet_for() >= 0.1)):
                await anyio.sleep(0.01)


LineSink = Callable[[Supervisor, list[tuple[str, str]]], None]
GoneSink = Callable[[Supervisor, ContainerInfo | None, bool], Awaitable[None]]


class Observers:
    """Starts a supervisor's log follower and exit waiter on the scheduler's task group."""

    def __init__(self, *, limiter: anyio.CapacityLimiter, shutdown: threading.Event,
                 on_lines: LineSink, on_gone: GoneSink,
                 on_engine_lost: Callable[[str, EngineUnavailable], None]) -> None:
        self._limiter = limiter
        self._shutdown = shutdown
        self._on_lines = on_lines
        self._on_gone = on_gone
        self._on_engine_lost = on_engine_lost

    def start(self, tg: anyio.abc.TaskGroup, sup: Supervisor, runtime: Runtime, since: float | None) -> None:
        tg.start_soon(self._follow_logs, sup, runtime, since)
        tg.start_soon(self._wait_exit, sup, runtime)

    async def _follow_logs(self, sup: Supervisor, runtime: Runtime, since: float | None) -> None:
        feed = sup.feed

        def on_line(ts: str, text: str) -> None:
            if not feed.put(ts, text):
                sup.stop.set()  # the event loop is gone

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume, sup)
                try:
                    await anyio.to_thread.run_sync(runtime.follow_logs, sup.container.id, on_line,
                                                   sup.stop, since, limiter=self._limiter,
                                                   abandon_on_cancel=True)
                except EngineUnavailable as exc:
                    if not self._shutdown.is_set() and not sup.stop.is_set():
                        self._on_engine_lost(sup.engine, exc)
                except RuntimeFailure as exc:
                    log.warning("logs of %s: %s", sup.container.short_id, exc)
                finally:
                    feed.finish()  # the consumer hands over what is left, then ends
        finally:
            sup.logs_done.set()

    async def _consume(self, sup: Supervisor) -> None:
        while (batch := await sup.feed.next_batch()) is not None:
            try:
                self._on_lines(sup, batch)
            except Exception:  # a bug in a line handler must not end the follower
                log.exception("handling log lines of %s", sup.container.short_id)
            sup.feed.handled()

    async def _wait_exit(self, sup: Supervisor, runtime: Runtime) -> None:
        while True:
            try:
                final = await anyio.to_thread.run_sync(runtime.wait, sup.container.id, self._shutdown,
                                                       limiter=self._limiter, abandon_on_cancel=True)
            except EngineUnavailable as exc:
                if not self._shutdown.is_set():
                    self._on_engine_lost(sup.engine, exc)
                return
            except RuntimeFailure as exc:  # the engine answered an error: ask again
                log.warning("waiting for %s: %s", sup.container.short_id, exc)
                await anyio.sleep(1)
                continue
            break
        if self._shutdown.is_set() or sup.detached:
            return  # the core is going away (the container stays), or the engine did
        # `docker rm -f` marks the container "removing" before it kills it: a removal, not a crash.
        await self._on_gone(sup, final, final is None or final.status == "removing")


def describe_container(container: ContainerInfo, now: float) -> dict[str, Any]:
    return {"id": container.short_id, "name": container.name, "image": container.image,
            "started_at": container.started_at,
            "uptime": None if container.started_at is None else round(now - container.started_at, 1)}
