"""Requests the endpoint has in flight or queued, per model, as the scheduler needs to know them.

The proxy reports each request here; the scheduler reads it to drain a model before
stopping it (never cut a generation unless its drain timeout passed or the stop was
forced), to unload a model idle for its `ttl`, and for status. When a model must stop
under a request anyway, its ticket is cut: the proxy then ends that response with a
clear error instead of a closed socket.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass(eq=False)
class Ticket:
    """One request in flight to one model.

    `on_cut`: called once when the model stops under the request (the proxy cancels its relay
    there; a callback, not a task waiting on `cut`: two fewer task switches and a cancel a request).
    """

    model: str
    cut: anyio.Event = field(default_factory=anyio.Event)
    cut_reason: str = ""
    on_cut: Callable[[], object] | None = None


class RequestBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._serving: dict[str, set[Ticket]] = {}
        self._queued: Counter[str] = Counter()
        self._last: dict[str, float] = {}  # monotonic time of the last request start or end
        self._idle: dict[str, anyio.Event] = {}

    @contextmanager
    def waiting(self, model: str) -> Iterator[None]:
        """A request queued for a model that is not ready yet."""
        self._queued[model] += 1
        self._last[model] = self._clock()
        try:
            yield
        finally:
            self._queued[model] -= 1
            if self._queued[model] <= 0:
                del self._queued[model]

    @contextmanager
    def serving(self, model: str) -> Iterator[Ticket]:
        """A request in flight to the model's server."""
        ticket = Ticket(model)
        self._serving.setdefault(model, set()).add(ticket)
        self._last[model] = self._clock()
        self._idle.pop(model, None)
        try:
            yield ticket
        finally:
            tickets = self._serving.get(model, set())
            tickets.discard(ticket)
            self._last[model] = self._clock()
            if not tickets:
                self._serving.pop(model, None)
                idle = self._idle.pop(model, None)
                if idle is not None:
                    idle.set()

    def inflight(self, model: str) -> int:
        return len(self._serving.get(model, ()))

    def queued(self, model: str) -> int:
        return self._queued.get(model, 0)

    def touch(self, model: str) -> None:
        """Count as used now (a load on demand counts as use: its ttl starts when it is ready)."""
        self._last[model] = self._clock()

    def idle_for(self, model: str) -> float | None:
        """Seconds since the last request began or ended; None when none ever came."""
        if self.inflight(model) or self.queued(model):
            return 0.0
        last = self._last.get(model)
        return None if last is None else self._clock() - last

    async def wait_idle(self, model: str, timeout: float) -> bool:
        """Wait until no request is in flight to the model; False when the timeout passed."""
        if not self.inflight(model):
            return True
        event = self._idle.setdefault(model, anyio.Event())
        with anyio.move_on_after(max(0.0, timeout)):
            await event.wait()
        return not self.inflight(model)

    def cut(self, model: str, reason: str) -> int:
        """The model stops under its requests: tell each of them why. Returns how many."""
        tickets = list(self._serving.get(model, ()))
        for ticket in tickets:
            ticket.cut_reason = reason
            ticket.cut.set()
            if ticket.on_cut is not None:
                ticket.on_cut()
        return len(tickets)

    def forget(self, model: str) -> None:
        """The model stopped: its idle clock starts again at its next load."""
        self._last.pop(model, None)

    def to_dict(self, model: str) -> dict[str, Any]:
        return {"in_flight": self.inflight(model), "queued": self.queued(model)}
