"""Load history: the median of recent loads gives the next load's estimated percentage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_mcp.core.load_history import KEEP, LoadHistory, progress_fraction


def test_no_history_means_no_estimate(tmp_path: Path) -> None:
    assert LoadHistory(tmp_path / "h.json").estimate("a") is None


def test_the_estimate_is_the_median_of_recorded_loads(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "h.json")
    for seconds in (10.0, 30.0, 12.0):
        history.record("a", seconds)
    history.record("b", 3.0)
    assert history.estimate("a") == 12.0
    assert history.estimate("b") == 3.0
    history.record("a", 14.0)
    assert history.estimate("a") == 13.0  # even count: mean of the middle two


def test_only_the_most_recent_loads_count(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "h.json")
    for _ in range(KEEP):
        history.record("a", 100.0)
    for _ in range(KEEP):
        history.record("a", 5.0)  # the model moved to a faster disk
    assert history.estimate("a") == 5.0
    assert len(json.loads((tmp_path / "h.json").read_text())["a"]) == KEEP


def test_the_history_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "h.json"
    LoadHistory(path).record("a", 7.25)
    assert LoadHistory(path).estimate("a") == 7.25
    assert not path.with_suffix(".tmp").exists()


@pytest.mark.parametrize("content", [
    "", "{not json", "[1, 2, 3]", '{"a": 5}', '{"a": ["x"]}', '{"a": [1, null]}', "\x00\xff",
])
def test_a_damaged_history_file_only_costs_the_estimate(tmp_path: Path, content: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    history = LoadHistory(path)
    assert history.estimate("a") is None
    history.record("a", 2.0)  # and it is rewritten whole on the next load
    assert LoadHistory(path).estimate("a") == 2.0


def test_a_history_path_that_is_a_directory_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "h.json").mkdir()
    assert LoadHistory(tmp_path / "h.json").estimate("a") is None


@pytest.mark.parametrize(("elapsed", "estimate", "fraction"), [
    (5.0, 10.0, 0.5),
    (0.0, 10.0, 0.0),
    (30.0, 10.0, 0.99),  # late: never claims done before the server says ready
    (5.0, None, None),
    (5.0, 0.0, None),
])
def test_progress_is_elapsed_over_the_estimate_capped_below_one(
    elapsed: float, estimate: float | None, fraction: float | None
) -> None:
    assert progress_fraction(elapsed, estimate) == fraction


def test_the_history_file_is_private_and_a_symlink_at_its_path_never_writes_the_target(
        tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = tmp_path / "state"
    state.mkdir()
    (state / "h.json").symlink_to(victim)
    LoadHistory(state / "h.json").record("a", 1.5)
    assert victim.read_text() == "keep me"
    assert not (state / "h.json").is_symlink()
    assert (state / "h.json").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    assert LoadHistory(state / "h.json").estimate("a") == 1.5
