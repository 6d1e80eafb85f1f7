"""Whether the container engine answers, and getting back to it by itself when it does not.

Anyone who sees EngineUnavailable reports it here (`lost`); one loop then pings the
engine with a growing pause (0.5 s doubling to 5 s) until it answers, and calls
`on_back` so the core can adopt what runs. The daemon never ends because an engine
went away: an engine outage is a state, shown in `status` as `docker`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio

from llm_mcp.runtime import EngineUnavailable

log = logging.getLogger("llm_mcp.engine")


def backoff(first: float = 0.5, cap: float = 5.0) -> Iterator[float]:
    """0.5, 1, 2, 4, 5, 5, ... seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


class EngineLink:
    def __init__(self, ping: Callable[[], None], *, first_delay: float = 0.5, max_delay: float = 5.0,
                 limiter: anyio.CapacityLimiter | None = None) -> None:
        self._ping = ping
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

    def lost(self, problem: EngineUnavailable) -> bool:
        """Record that the engine did not answer; True when it was thought available until now."""
        self.problem = problem
        if not self.available:
            return False
        log.warning("the engine stopped answering: %s (%s)", problem.message, problem.detail)
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
            log.info("the engine answers again")
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
        return {"available": self.available, "since": self.since,
                "message": problem.message if problem else None,
                "hint": problem.hint if problem else None}
