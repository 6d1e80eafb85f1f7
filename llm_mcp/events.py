"""Fan-out of events to subscribers that can never block the publisher.

Each subscriber has a bounded queue; when it is full the oldest event is dropped
and counted, so a slow monitor loses history, not the daemon its liveness.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

TOPICS = ("state", "job", "log", "gpu", "system")


@dataclass(slots=True)
class Subscription:
    topics: frozenset[str]
    capacity: int
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    closed: bool = False
    _wakeup: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, event: dict[str, Any]) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(event)
        self._wakeup.set()

    async def next_batch(self, limit: int = 256) -> list[dict[str, Any]]:
        """Wait for at least one event and return up to `limit` of them."""
        while not self.queue:
            if self.closed:
                return []
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self.drain(limit)

    def drain(self, limit: int) -> list[dict[str, Any]]:
        """Whatever is queued now, up to `limit`, without waiting."""
        return [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._seq = 0

    def subscribe(self, topics: Iterable[str], capacity: int = 2000) -> Subscription:
        sub = Subscription(frozenset(topics), capacity)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        self._seq += 1
        event = {"topic": topic, "seq": self._seq, "time": time.time(), "data": data}
        for sub in self._subs:
            if topic in sub.topics:
                sub.offer(event)

    def wanted(self, *topics: str) -> bool:
        """Does any subscriber want one of `topics`? (Sampling costs nothing when nobody looks.)"""
        return any(sub.topics.intersection(topics) for sub in self._subs)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
