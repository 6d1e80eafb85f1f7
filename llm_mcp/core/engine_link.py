"""Whether one container engine answers, and getting back to it by itself when it does not.

One EngineLink per engine (they know nothing of each other). Anyone who sees
EngineUnavailable reports it here (`lost`); one loop then pings the engine with a
growing pause (0.5 s doubling to 5 s) until it answers, and calls `on_back` so the
core can adopt what runs there. The daemon never ends because an engine went away:
an outage is a state of that engine, shown in `status` (its `engines` entry).

Loss is noticed by whoever calls the engine, and by `follow_events`: a stopped
engine ends its event stream at once (then one ping, refused within milliseconds);
a hung one, or one behind a network that drops everything, by the pings it sends
every WATCH_S while the stream is quiet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio

from llm_mcp.runtime.base import DEFAULT_ENGINE, EngineUnavailable, Runtime, RuntimeFailure
from llm_mcp.runtime.log_signals import Failure

log = logging.getLogger("llm_mcp.engine")

DOCKER_UNAVAILABLE = "docker_unavailable"
WATCH_S = 2.0  # between pings while the event stream is quiet
WATCH_MISSES = 2  # pings in a row that must fail (the second at once) before a quiet engine is lost


def backoff(first: float = 0.5, cap: float = 5.0) -> Iterator[float]:
    """0.5, 1, 2, 4, 5, 5, ... seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


class EngineLink:
    """One engine's availability: `name` as in models.conf, `url` where it is (for messages)."""

    def __init__(self, ping: Callable[[], None], *, name: str = DEFAULT_ENGINE, url: str = "",
                 first_delay: float = 0.5, max_delay: float = 5.0,
                 limiter: anyio.CapacityLimiter | None = None) -> None:
        self._ping = ping
        self.name = name
        self.url = url
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._limiter = limiter
        self.available = True
        self.since = time.time()
        self.problem: EngineUnavailable | None = None
        self._lost = anyio.Event()
        self._back = anyio.Event()
        self._back.set()
        self._poke = anyio.Event()

    @classmethod
    def for_runtime(cls, runtime: Runtime, *, first_delay: float = 0.5, max_delay: float = 5.0,
                    limiter: anyio.CapacityLimiter | None = None) -> EngineLink:
        return cls(runtime.ping, name=runtime.engine, url=runtime.host, first_delay=first_delay,
                   max_delay=max_delay, limiter=limiter)

    @property
    def label(self) -> str:
        """"Docker engine 'gpu2' (tcp://gpu2:2376)", for log lines."""
        return f"Docker engine '{self.name}'" + (f" ({self.url})" if self.url else "")

    def lost(self, problem: EngineUnavailable) -> bool:
        """Record that the engine did not answer; True when it was thought available until now."""
        self.problem = problem
        if not self.available:
            return False
        log.warning("%s stopped answering: %s (%s)", self.label, problem.message, problem.detail)
        self.available = False
        self.since = time.time()
        self._back = anyio.Event()
        self._lost.set()
        return True

    def poke(self) -> None:
        """Try again now (someone wants the engine), instead of after the current pause."""
        self._poke.set()

    async def wait_back(self) -> None:
        await self._back.wait()

    async def run(self, on_back: Callable[[], Awaitable[None]]) -> None:
        while True:
            await self._lost.wait()
            await self._until_it_answers()
            self._lost = anyio.Event()
            self.available, self.since, self.problem = True, time.time(), None
            log.info("%s answers again", self.label)
            self._back.set()
            await on_back()  # it may report the engine lost again: then the loop goes round

    async def _until_it_answers(self) -> None:
        for delay in backoff(self.first_delay, self.max_delay):
            self._poke = anyio.Event()
            with anyio.move_on_after(delay):
                await self._poke.wait()
            try:
                await anyio.to_thread.run_sync(self._ping, limiter=self._limiter)
            except EngineUnavailable as exc:
                self.problem = exc
                continue
            return

    def to_dict(self) -> dict[str, Any]:
        problem = self.problem if not self.available else None
        return {"name": self.name, "url": self.url, "available": self.available, "since": self.since,
                "message": problem.message if problem else None,
                "hint": problem.hint if problem else None}


def outage_failure(problem: EngineUnavailable | None) -> Failure:
    """What a job that the outage ended says."""
    message = problem.message if problem is not None else "Docker stopped answering"
    return Failure(DOCKER_UNAVAILABLE, message, reconnect_hint(problem))


def reconnect_hint(problem: EngineUnavailable | None) -> str:
    first = problem.hint if problem is not None and problem.hint else (
        "start Docker (`sudo systemctl start docker`, or `dockerd`)")
    return f"{first}; llm-mcp reconnects by itself and adopts the container if it still runs"


async def follow_events(runtime: Runtime, link: EngineLink, on_event: Callable[[str, str], None],
                        new_stop: Callable[[], threading.Event], shutdown: threading.Event, *,
                        lost: Callable[[EngineUnavailable], None],
                        limiter: anyio.CapacityLimiter | None = None, watch_s: float = WATCH_S) -> None:
    """Follow one engine's container events for as long as it answers, again when it is back.

    The event stream is the first thing to end when an engine goes away: then a ping
    tells an engine that went from a stream that merely closed. Meanwhile pings every
    `watch_s` notice an engine that hangs with the stream open; they end the stream.
    """
    while not shutdown.is_set():
        await link.wait_back()
        try:
            stop = new_stop()
            silent: list[EngineUnavailable] = []
            failed: list[RuntimeFailure] = []  # raised out here: a task group would wrap it in a group
            async with anyio.create_task_group() as watching:
                watching.start_soon(partial(_watch, runtime.ping, stop, every=watch_s, found=silent,
                                            limiter=limiter, following=watching.cancel_scope))
                try:
                    await anyio.to_thread.run_sync(runtime.events, on_event, stop, limiter=limiter,
                                                   abandon_on_cancel=True)
                except RuntimeFailure as exc:
                    failed.append(exc)
                watching.cancel_scope.cancel()
            if silent or failed:
                raise (silent or failed)[0]
            if shutdown.is_set():
                return
            await anyio.to_thread.run_sync(runtime.ping, limiter=limiter)
        except EngineUnavailable as exc:
            lost(exc)
            continue
        except RuntimeFailure as exc:
            log.warning("%s: events: %s; retrying", link.label, exc)
        await anyio.sleep(1)


async def _watch(ping: Callable[[], None], stop: threading.Event, *, every: float,
                 found: list[EngineUnavailable], limiter: anyio.CapacityLimiter | None,
                 following: anyio.CancelScope) -> None:
    """Ping while the stream runs; WATCH_MISSES failures in a row put the problem in `found`
    and end the stream (or leave its thread behind, if it is stuck before it began)."""
    misses = 0
    while not stop.is_set():
        if misses == 0:
            await anyio.sleep(every)
        try:
            await anyio.to_thread.run_sync(ping, limiter=limiter, abandon_on_cancel=True)
        except EngineUnavailable as exc:
            misses += 1
            if misses >= WATCH_MISSES:
                found.append(exc)
                stop.set()
                following.cancel()
                return
        except RuntimeFailure as exc:  # it answered, if oddly: not lost
            log.debug("ping while following events: %s", exc)
            misses = 0
        else:
            misses = 0
