"""Fan-out of events to subscribers that can never block the publisher.

Each subscriber has a queue bounded in events and in bytes; when it is full the
oldest event is dropped and counted, so a slow monitor loses history, not the
daemon its liveness (or its memory: log lines can be 16 KiB each).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

MAX_QUEUE_BYTES = 8 * 1024 * 1024
EVENT_OVERHEAD = 300  # bytes an event costs beyond a log line's text


def event_size(event: dict[str, Any]) -> int:
    """About what an event holds in memory: log lines by their text, others a fixed guess."""
    data = event.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    return EVENT_OVERHEAD + (len(text) if isinstance(text, str) else 1000)


@dataclass(slots=True)
class Subscription:
    topics: frozenset[str]
    capacity: int
    max_bytes: int = MAX_QUEUE_BYTES
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    closed: bool = False
    queued_bytes: int = 0
    _sizes: deque[int] = field(default_factory=deque)  # event_size of each queued event
    _wakeup: anyio.Event = field(default_factory=anyio.Event)

    def offer(self, event: dict[str, Any], size: int | None = None) -> None:
        size = event_size(event) if size is None else size
        self.queue.append(event)
        self._sizes.append(size)
        self.queued_bytes += size
        while len(self.queue) > max(1, self.capacity) or (self.queued_bytes > self.max_bytes
                                                          and len(self.queue) > 1):
            self.queue.popleft()
            self.queued_bytes -= self._sizes.popleft()
            self.dropped += 1
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
        out = []
        for _ in range(min(limit, len(self.queue))):
            out.append(self.queue.popleft())
            self.queued_bytes -= self._sizes.popleft()
        return out

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
        size = event_size(event)
        for sub in self._subs:
            if topic in sub.topics:
                sub.offer(event, size)

    def wanted(self, *topics: str) -> bool:
        """Does any subscriber want one of `topics`? (Sampling costs nothing when nobody looks.)"""
        return any(sub.topics.intersection(topics) for sub in self._subs)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
