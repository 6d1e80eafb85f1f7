"""The pure parts of the engine link and the ready-health watch."""

from __future__ import annotations

import itertools

from llm_mcp.core.engine_link import backoff
from llm_mcp.core.ready_health import OK, UNRESPONSIVE, HealthTracker, describe
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
