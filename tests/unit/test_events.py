"""The event bus: subscribers with bounded queues that never block the publisher."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.events import EventBus

pytestmark = pytest.mark.anyio


def test_subscribers_get_only_their_topics_in_order() -> None:
    bus = EventBus()
    states = bus.subscribe(["state"])
    everything = bus.subscribe(["state", "log"])
    bus.publish("state", {"state": "loading"})
    bus.publish("log", {"text": "x"})
    bus.publish("state", {"state": "ready"})
    assert [e["data"]["state"] for e in states.queue] == ["loading", "ready"]
    assert [e["topic"] for e in everything.queue] == ["state", "log", "state"]
    seqs = [e["seq"] for e in everything.queue]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all(isinstance(e["time"], float) for e in everything.queue)


def test_a_full_queue_drops_the_oldest_events_and_counts_them() -> None:
    bus = EventBus()
    slow = bus.subscribe(["log"], capacity=3)
    for i in range(10):
        bus.publish("log", {"n": i})
    assert [e["data"]["n"] for e in slow.queue] == [7, 8, 9]
    assert slow.dropped == 7


async def test_next_batch_waits_for_an_event_and_returns_up_to_the_limit() -> None:
    bus = EventBus()
    sub = bus.subscribe(["job"])

    async def publish_later() -> None:
        await anyio.sleep(0.01)
        for i in range(5):
            bus.publish("job", {"n": i})

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_later)
            first = await sub.next_batch(limit=3)
    assert [e["data"]["n"] for e in first] == [0, 1, 2]
    assert [e["data"]["n"] for e in await sub.next_batch()] == [3, 4]


async def test_unsubscribing_wakes_a_waiting_reader_with_an_empty_batch() -> None:
    bus = EventBus()
    sub = bus.subscribe(["state"])
    got: list[list[object]] = []

    async def read() -> None:
        got.append(list(await sub.next_batch()))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.01)
            bus.unsubscribe(sub)
    assert got == [[]]
    assert bus.subscriber_count == 0
    bus.publish("state", {})  # nobody left: publishing still works
    assert not sub.queue


def test_publishing_with_no_subscribers_costs_nothing() -> None:
    bus = EventBus()
    for _ in range(1000):
        bus.publish("gpu", {})
    assert bus.subscriber_count == 0


def test_sampling_topics_are_wanted_only_while_someone_subscribes_to_them() -> None:
    bus = EventBus()
    assert not bus.wanted("gpu", "system")
    logs = bus.subscribe(["log", "state"])
    assert not bus.wanted("gpu", "system")
    gpu = bus.subscribe(["gpu"])
    assert bus.wanted("gpu", "system") and bus.wanted("log")
    bus.unsubscribe(gpu)
    bus.unsubscribe(logs)
    assert not bus.wanted("gpu", "system", "log")


def test_a_queue_of_long_log_lines_is_bounded_in_bytes_and_drained_ones_free_their_bytes() -> None:
    bus = EventBus()
    sub = bus.subscribe(["log"], capacity=2000)
    for i in range(300):
        bus.publish("log", {"seq": i, "text": "x" * 65536})
    assert sub.queued_bytes <= 8 * 1024 * 1024
    assert len(sub.queue) < 130 and sub.dropped == 300 - len(sub.queue)
    assert sub.queue[-1]["data"]["seq"] == 299
    sub.drain(1000)
    assert sub.queued_bytes == 0


def test_a_capacity_below_one_keeps_the_newest_event_instead_of_crashing() -> None:
    bus = EventBus()
    sub = bus.subscribe(["log"], capacity=0)
    bus.publish("log", {"text": "a"})
    bus.publish("log", {"text": "b"})
    assert [e["data"]["text"] for e in sub.queue] == ["b"]
