"""The pure parts of the engine link and the ready-health watch."""

from __future__ import annotations

import itertools
import threading

import anyio
import pytest

from llm_mcp.core.engine_link import backoff
from llm_mcp.core.ready_health import OK, UNRESPONSIVE, HealthTracker, ReadyHealth, describe
from llm_mcp.runtime.base import ContainerInfo
from llm_mcp.runtime.health import Health


def test_reconnect_pauses_double_from_half_a_second_up_to_five() -> None:
    assert list(itertools.islice(backoff(), 7)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_one_missed_health_check_is_not_yet_unresponsive_two_in_a_row_are() -> None:
    tracker = HealthTracker(misses=2)
    down = Health("unreachable", None, "ReadTimeout")
    assert tracker.observe(down, now=1.0) is False and tracker.status == OK
    assert tracker.observe(Health("ok", 200, ""), now=2.0) is False  # the count starts again
    assert tracker.observe(down, now=3.0) is False
    assert tracker.observe(down, now=4.0) is True
    assert tracker.status == UNRESPONSIVE and tracker.since == 4.0
    assert tracker.observe(Health("ok", 200, ""), now=5.0) is True and tracker.status == OK


def test_an_unresponsive_paused_container_is_named_paused_with_the_unpause_command() -> None:
    tracker = HealthTracker(misses=1)
    tracker.observe(Health("unreachable", None, "ReadTimeout"))
    paused = describe(tracker, "paused", "abc123")
    assert "paused" in paused["message"] and "docker unpause abc123" in paused["hint"]
    hung = describe(tracker, "running", "abc123")
    assert "no answer" in hung["message"] and "left running" in hung["hint"]


@pytest.mark.anyio
async def test_unresponsive_is_shown_with_its_reason_at_once_never_before_docker_said_paused() -> None:
    paused = threading.Event()  # the inspect (a Docker call in a thread) answers when the test says

    def inspect(container_id: str) -> ContainerInfo:
        paused.wait(5)
        return ContainerInfo(container_id, "n", "paused", "p", "h", "i", None, None, False, None)

    class Down:
        async def health(self) -> Health:
            return Health("unreachable", None, "ReadTimeout")

        async def aclose(self) -> None:
            pass

    watch = ReadyHealth(0.005, inspect)
    changes: list[str | None] = []
    container = ContainerInfo("abcdef123456", "n", "running", "p", "h", "i", None, None, False, None)
    async with anyio.create_task_group() as tg:
        watch.start(tg, Down(), container, alive=lambda: True, on_change=lambda: changes.append(watch.status))
        await anyio.sleep(0.1)  # several failed probes: the tracker is unresponsive, Docker not yet asked
        assert watch.status == OK and changes == []
        paused.set()
        with anyio.fail_after(5):
            while watch.status == OK:
                await anyio.sleep(0.005)
        detail = watch.detail()
        assert detail is not None and watch.status == UNRESPONSIVE and changes == [UNRESPONSIVE]
        assert "paused" in detail["message"] and "docker unpause abcdef123456" in detail["hint"]
        watch.stop()
        tg.cancel_scope.cancel()
