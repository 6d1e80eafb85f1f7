"""The log book: a bounded ring across runs, separators, and bounded per-run files."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_mcp.logbook import Logbook, LogLine


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Book = Callable[..., Logbook]


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    """Log books in one directory, closed when the test ends."""
    made: list[Logbook] = []

    def make(**kwargs: object) -> Logbook:
        kwargs.setdefault("clock", Clock())
        made.append(Logbook(tmp_path / "logs", **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for logbook in made:
        logbook.close()


def run_id(n: int) -> str:
    return f"{n:012x}" + "f" * 52


def test_the_ring_keeps_only_the_newest_lines_up_to_its_capacity(book: Book) -> None:
    logbook = book(capacity=10)
    logbook.begin_run(run_id(1), "a")
    for i in range(25):
        logbook.append(f"line {i}")
    texts = [ln.text for ln in logbook.tail(100)]
    assert texts == [f"line {i}" for i in range(15, 25)]
    assert [ln.seq for ln in logbook.tail(3)] == [23, 24, 25]


def test_tail_returns_the_last_n_and_nothing_for_zero(book: Book) -> None:
    logbook = book()
    logbook.begin_run(run_id(1), "a")
    for i in range(5):
        logbook.append(f"line {i}")
    assert [ln.text for ln in logbook.tail(2)] == ["line 3", "line 4"]
    assert logbook.tail(0) == []
    assert [ln.text for ln in logbook.tail(10, re.compile(r"[13]$"))] == ["line 1", "line 3"]


def test_separators_mark_each_switch_and_runs_are_told_apart(book: Book) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    for n, profile in enumerate(["a", "b", "a"], start=1):
        logbook.separator(f"switching to {profile.upper()}")
        logbook.begin_run(run_id(n), profile)
        logbook.append(f"{profile} loaded")
        logbook.end_run()
        clock.now += 0.01  # three runs within one second
    lines = logbook.tail(100)
    assert [(ln.kind, ln.text) for ln in lines] == [
        ("separator", "--- switching to A ---"), ("log", "a loaded"),
        ("separator", "--- switching to B ---"), ("log", "b loaded"),
        ("separator", "--- switching to A ---"), ("log", "a loaded"),
    ]
    assert [ln.run for ln in lines if ln.kind == "log"] == [run_id(n)[:12] for n in (1, 2, 3)]
    # Run files sort in the order the runs began, even within the same second.
    assert [p.name[-16:-4] for p in logbook.run_files()] == [run_id(n)[:12] for n in (1, 2, 3)]
    assert logbook.previous_run() == run_id(2)[:12]  # the run before the current one


def test_tail_by_run_reads_the_current_previous_or_a_named_run(book: Book) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    logbook.begin_run(run_id(1), "a")
    logbook.append("first run")
    clock.now += 1
    logbook.begin_run(run_id(2), "b")
    logbook.append("second run")
    assert [ln.text for ln in logbook.tail(10, run="current")] == ["second run"]
    assert [ln.text for ln in logbook.tail(10, run="previous")] == ["first run"]
    assert [ln.text for ln in logbook.tail(10, run=run_id(1))] == ["first run"]


def test_a_run_that_left_the_ring_is_read_back_from_its_file(book: Book) -> None:
    clock = Clock()
    logbook = book(capacity=3, clock=clock)
    logbook.begin_run(run_id(1), "a")
    logbook.append("old line")
    clock.now += 1
    logbook.begin_run(run_id(2), "b")
    for i in range(5):
        logbook.append(f"new {i}")
    assert [ln.text for ln in logbook.tail(10, run=run_id(1))] == ["old line"]


def test_each_run_file_stops_growing_at_its_size_bound_but_memory_keeps_the_lines(book: Book) -> None:
    logbook = book(max_file_bytes=2000)
    path = logbook.begin_run(run_id(1), "a")
    for i in range(200):
        logbook.append(f"line {i:04d} " + "x" * 20, "2026-01-01T00:00:00.000000000Z")
    logbook.end_run()
    size = path.stat().st_size
    assert size <= 2000 + 200  # the bound plus one closing note
    assert "log file reached 2000 bytes" in path.read_text()
    assert logbook.tail(1)[0].text.startswith("line 0199")


def test_old_run_files_are_pruned_to_the_count_bound(book: Book) -> None:
    clock = Clock()
    logbook = book(max_files=3)
    logbook.clock = clock
    for n in range(1, 7):
        logbook.begin_run(run_id(n), "a")
        logbook.append(f"run {n}")
        clock.now += 1
    logbook.end_run()
    names = [p.name for p in logbook.run_files()]
    assert len(names) == 3
    assert [name[-16:-4] for name in names] == [run_id(n)[:12] for n in (4, 5, 6)]


def test_restore_run_reloads_a_run_and_returns_its_last_docker_timestamp(book: Book) -> None:
    first = book()
    first.separator("switching to A")
    first.begin_run(run_id(7), "a")
    first.append("loading", "2026-01-01T00:00:01.000000000Z")
    first.note("a note from llm-mcp")
    first.append("model loaded", "2026-01-01T00:00:02.500000000Z")
    first.close()

    second = book()
    assert second.restore_run(run_id(7)).latest == "2026-01-01T00:00:02.500000000Z"
    restored = second.tail(10)
    assert [ln.text for ln in restored] == ["loading", "model loaded"]  # no notes or separators
    assert all(ln.run == run_id(7)[:12] and ln.kind == "log" for ln in restored)
    assert second.restore_run(run_id(8)).latest is None


def test_resuming_a_run_appends_to_its_existing_file(book: Book) -> None:
    first = book()
    path = first.begin_run(run_id(3), "a")
    first.append("before restart", "2026-01-01T00:00:01.000000000Z")
    first.close()
    second = book()
    assert second.begin_run(run_id(3), "a", resume=True) == path
    second.append("after restart", "2026-01-01T00:00:02.000000000Z")
    second.close()
    assert path.read_text().splitlines() == [
        "2026-01-01T00:00:01.000000000Z before restart", "2026-01-01T00:00:02.000000000Z after restart"]


def test_every_line_is_offered_to_the_listener_with_a_growing_seq(book: Book) -> None:
    seen: list[LogLine] = []
    logbook = book(on_line=seen.append)
    logbook.separator("switching to A")
    logbook.begin_run(run_id(1), "a")
    logbook.append("x")
    logbook.note("y")
    assert [ln.kind for ln in seen] == ["separator", "log", "note"]
    assert [ln.seq for ln in seen] == [1, 2, 3]
    assert [ln.text for ln in logbook.since(1)] == ["x", "y"]
    assert seen[1].to_dict() == {"seq": 2, "time": seen[1].time, "run": run_id(1)[:12], "kind": "log",
                                 "text": "x"}
