"""Lines from a follower thread reach the event loop in order, in batches, none left behind."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest

from llm_mcp.core.line_feed import LineFeed

pytestmark = pytest.mark.anyio


async def test_every_line_arrives_once_in_order_in_few_batches_and_the_last_after_finish() -> None:
    feed = LineFeed()
    got: list[tuple[str, str]] = []
    batches = 0

    def follower() -> None:
        for i in range(5000):
            feed.put(str(i), f"line {i}")

    async def consume() -> None:
        nonlocal batches
        while (batch := await feed.next_batch()) is not None:
            got.extend(batch)
            batches += 1
            feed.handled()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.to_thread.run_sync(follower)
            feed.finish()
    assert got == [(str(i), f"line {i}") for i in range(5000)]
    assert batches < 100  # not one hand-over per line
    assert feed.empty()


async def test_a_line_after_a_quiet_spell_wakes_the_loop_side() -> None:
    feed = LineFeed()
    arrived = threading.Event()

    async def consume() -> None:
        batch = await feed.next_batch()
        assert batch == [("t", "late line")]
        arrived.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.1)  # the consumer is idle, waiting
            await anyio.to_thread.run_sync(feed.put, "t", "late line")
        assert arrived.is_set()


def test_put_reports_a_gone_event_loop() -> None:
    feed = LineFeed()

    async def wait_once() -> None:
        with anyio.move_on_after(0.05):
            await feed.next_batch()

    anyio.run(wait_once)  # leaves the feed idle, its loop gone
    assert feed.put("t", "x") is False
