"""The log book: a bounded ring across runs, separators, and bounded per-run files."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm_mcp.core.logbook import Logbook, LogLine


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
        logbook.end_run()
        clock.now += 1
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
    assert seen[1].to_dict() == {"seq": 2, "time": seen[1].time, "run": run_id(1)[:12], "kind": "log",
                                 "text": "x", "model": "a"}
    assert seen[2].to_dict()["model"] is None  # a daemon-wide note


# ---- bounded in bytes, cut lines, restore, full disk, safe files ------------------------


def test_the_ring_is_bounded_in_bytes_as_well_as_lines(book: Book) -> None:
    logbook = book(capacity=5000, max_bytes=1_000_000, max_line_bytes=100_000)
    logbook.begin_run(run_id(1), "a")
    for i in range(100):
        logbook.append(f"{i} " + "x" * 50_000)
    assert logbook.bytes_held <= 1_000_000
    kept = logbook.tail(5000)
    assert 10 <= len(kept) < 20
    assert kept[-1].text.startswith("99 ")  # the newest stay


def test_an_over_long_line_is_cut_with_a_marker_in_memory_and_in_its_file(book: Book) -> None:
    logbook = book(max_line_bytes=1000)
    path = logbook.begin_run(run_id(1), "a")
    logbook.append("y" * 5000, "2026-01-01T00:00:00.000000000Z")
    [line] = logbook.tail(1)
    assert line.text == "y" * 1000 + " [... 4000 more bytes cut by llm-mcp]"
    assert path.read_text().rstrip("\n").endswith("[... 4000 more bytes cut by llm-mcp]")


SEPARATORS = "\r \f \v \x1c \x1d \x1e \x85 \u2028 \u2029"


def test_separators_inside_a_line_survive_a_restore_unchanged(book: Book) -> None:
    first = book()
    first.begin_run(run_id(5), "a")
    texts = [f"line {i} {SEPARATORS} end" for i in range(3)]
    for i, text in enumerate(texts):
        first.append(text, f"2026-01-01T00:00:0{i}.000000000Z")
    first.close()
    second = book()
    restored = second.restore_run(run_id(5))
    assert [ln.text for ln in second.tail(10)] == texts
    assert len(restored.records) == 3
    assert restored.latest == "2026-01-01T00:00:02.000000000Z"


def test_restore_history_loads_earlier_runs_oldest_first_each_after_a_separator(book: Book) -> None:
    clock = Clock()
    first = book(clock=clock)
    for n in (1, 2, 3):
        first.begin_run(run_id(n), f"p{n}")
        first.append(f"run {n} line", f"2026-01-01T00:00:0{n}.000000000Z")
        first.note(f"note {n}")
        clock.now += 1
    first.close()
    second = book()
    second.restore_history()
    lines = second.tail(100)
    assert [ln.kind for ln in lines] == ["separator", "log", "note"] * 3
    assert [ln.text for ln in lines if ln.kind == "log"] == ["run 1 line", "run 2 line", "run 3 line"]
    assert lines[0].text.startswith(f"--- restored run {run_id(1)[:12]} of p1 (started ")
    assert lines[1].time == 1767225601.0  # the line's own Docker timestamp
    # The current container's run is already in memory: adopting it does not load it twice.
    assert second.restore_run(run_id(3)).latest == "2026-01-01T00:00:03.000000000Z"
    assert len(second.tail(100)) == 9


def test_restore_history_is_bounded_by_the_ring(book: Book) -> None:
    clock = Clock()
    first = book(clock=clock)
    for n in range(1, 6):
        first.begin_run(run_id(n), "a")
        for i in range(10):
            first.append(f"run {n} line {i}", "2026-01-01T00:00:00.000000000Z")
        clock.now += 1
    first.close()
    second = book(capacity=25)
    second.restore_history()
    texts = [ln.text for ln in second.tail(100)]
    assert len(texts) <= 25
    assert texts[-1] == "run 5 line 9"
    assert not any(t.startswith("run 1 ") for t in texts)


def test_run_files_are_private_and_a_planted_symlink_is_not_followed(book: Book, tmp_path: Path) -> None:
    logbook = book()
    path = logbook.begin_run(run_id(1), "a")
    logbook.append("x")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    logbook.end_run()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    planted = logbook.directory / path.name.replace(run_id(1)[:12], run_id(2)[:12])
    planted.symlink_to(victim)
    logbook.begin_run(run_id(2), "a", resume=True)
    logbook.append("must not reach the victim")
    assert victim.read_text() == "keep me\n"
    assert logbook.write_error is not None and "symlink" in logbook.write_error
    assert logbook.tail(1)[0].text == "must not reach the victim"  # memory keeps it


def test_a_full_disk_stops_the_files_not_the_log_and_says_so_once(tmp_path: Path) -> None:
    from tests.fulldisk import free, full_tmpfs

    with full_tmpfs(tmp_path / "state") as state:
        logbook = Logbook(state / "logs", capacity=100_000)
        logbook.begin_run(run_id(1), "a")
        for i in range(20_000):
            logbook.append(f"line {i} " + "z" * 100, "2026-01-01T00:00:00.000000000Z")
        logbook.end_run()
        assert logbook.write_error is not None and "No space left" in logbook.write_error
        lines = logbook.tail(100_000)
        assert [ln.text for ln in lines if ln.kind == "log"] == [f"line {i} " + "z" * 100
                                                                  for i in range(20_000)]
        notes = [ln.text for ln in lines if ln.kind == "note"]
        assert len(notes) == 1 and "keeping the log in memory only" in notes[0]
        # Room again: the next run writes its file, and says so.
        free(state)
        path = logbook.begin_run(run_id(2), "a")
        logbook.append("written again", "2026-01-01T00:00:01.000000000Z")
        logbook.close()
        assert logbook.write_error is None
        assert "written again" in path.read_text()


# ---- several runs at once (one per running model) -------------------------------------------


def two_models(logbook: Logbook, clock: Clock) -> tuple[Path, Path]:
    """Runs of models a and b open at once, their lines and notes interleaved."""
    path_a = logbook.begin_run(run_id(1), "a")
    clock.now += 0.01
    path_b = logbook.begin_run(run_id(2), "b")
    for i in range(3):
        logbook.append(f"a {i}", f"2026-01-01T00:00:0{i}.000000000Z", run=run_id(1))
        logbook.append(f"b {i}", f"2026-01-01T00:00:0{i}.500000000Z", run=run_id(2))
    logbook.note("health of a: ok", model="a")
    logbook.separator("restarting b", model="b")
    logbook.note("Docker answers again")
    return path_a, path_b


def file_texts(path: Path) -> list[str]:
    return [record.partition(" ")[2] for record in path.read_text().split("\n") if record]


def test_two_runs_write_at_once_and_each_file_gets_only_its_own_lines(book: Book) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    path_a, path_b = two_models(logbook, clock)
    assert logbook.open_runs() == [run_id(1)[:12], run_id(2)[:12]]
    assert logbook.current_run == run_id(2)[:12]  # the most recently begun
    logbook.append("b again")  # no run named: the most recently begun
    logbook.flush()
    assert file_texts(path_a) == ["a 0", "a 1", "a 2", "[llm-mcp] health of a: ok"]
    # A daemon-wide note goes into the most recently begun run's file (the single-model behaviour).
    assert file_texts(path_b) == ["b 0", "b 1", "b 2", "--- restarting b ---",
                                  "[llm-mcp] Docker answers again", "b again"]
    lines = logbook.tail(100)
    assert [(ln.text, ln.model) for ln in lines if ln.kind != "log"] == [
        ("health of a: ok", "a"), ("--- restarting b ---", "b"), ("Docker answers again", None)]
    assert {ln.run: ln.model for ln in lines if ln.kind == "log"} == {run_id(1)[:12]: "a",
                                                                      run_id(2)[:12]: "b"}


def test_ending_one_run_leaves_the_other_writing_and_a_note_about_a_stopped_model_stays_in_memory(
    book: Book,
) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    path_a, path_b = two_models(logbook, clock)
    logbook.end_run(run_id(1))
    assert logbook.open_runs() == [run_id(2)[:12]]
    logbook.append("b after a stopped", run=run_id(2))
    logbook.note("model a stopped", model="a")  # a has no open run: memory only
    logbook.end_run()  # the most recently begun: b
    assert logbook.open_runs() == []
    assert "model a stopped" not in path_a.read_text() + path_b.read_text()
    assert file_texts(path_b)[-1] == "b after a stopped"
    assert logbook.tail(1, model="a")[0].text == "model a stopped"


def test_tail_by_model_gives_its_lines_and_the_notes_about_it_but_not_daemon_wide_notes(
    book: Book,
) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    two_models(logbook, clock)
    assert [ln.text for ln in logbook.tail(100, model="a")] == ["a 0", "a 1", "a 2", "health of a: ok"]
    assert [ln.text for ln in logbook.tail(2, model="b")] == ["b 2", "--- restarting b ---"]
    assert [ln.text for ln in logbook.tail(100, re.compile("1"), model="b")] == ["b 1"]
    assert logbook.tail(100, model="never-ran") == []
    assert logbook.tail(100, run="current", model="never-ran") == []
    assert logbook.tail(100, run=run_id(1), model="b") == []  # a's run is not b's


def test_current_and_previous_are_per_model(book: Book) -> None:
    clock = Clock()
    logbook = book(clock=clock)
    for n, model in enumerate(["a", "b", "a", "b", "c"], start=1):
        logbook.begin_run(run_id(n), model)
        logbook.append(f"{model} run {n}")
        clock.now += 1
    logbook.end_run(run_id(3))
    assert [ln.text for ln in logbook.tail(10, run="current", model="a")] == ["a run 3"]
    assert [ln.text for ln in logbook.tail(10, run="previous", model="a")] == ["a run 1"]
    assert [ln.text for ln in logbook.tail(10, run="current", model="b")] == ["b run 4"]
    assert [ln.text for ln in logbook.tail(10, run="previous", model="b")] == ["b run 2"]
    assert logbook.tail(10, run="previous", model="c") == []
    assert [ln.text for ln in logbook.tail(10, run="current")] == ["c run 5"]  # no model: the newest
    assert logbook.current_run_of("a") == run_id(3)[:12] and logbook.current_run_of("x") is None
    assert logbook.previous_run() == run_id(4)[:12] and logbook.previous_run("b") == run_id(2)[:12]


def test_current_and_previous_of_a_model_come_from_the_file_names_after_a_restart(book: Book) -> None:
    clock = Clock()
    first = book(clock=clock, capacity=4)
    for n, model in enumerate(["a", "b", "a", "b", "b"], start=1):
        first.begin_run(run_id(n), model)
        first.append(f"{model} run {n}", "2026-01-01T00:00:00.000000000Z")
        clock.now += 1
    first.close()
    second = book(capacity=4)  # nothing in memory yet
    assert [ln.text for ln in second.tail(10, run="current", model="a")] == ["a run 3"]
    assert [(ln.text, ln.model) for ln in second.tail(10, run="previous", model="a")] == [("a run 1", "a")]
    assert [ln.text for ln in second.tail(10, run="previous", model="b")] == ["b run 4"]


def test_restore_keeps_each_lines_model_from_the_file_name(book: Book) -> None:
    clock = Clock()
    first = book(clock=clock)
    two_models(first, clock)
    clock.now += 1
    first.begin_run(run_id(3), "my-model-2")  # a profile id with dashes
    first.append("c 0", "2026-01-01T00:00:05.000000000Z")
    first.close()
    second = book()
    second.restore_history()
    lines = second.tail(100)
    assert [(ln.kind, ln.model) for ln in lines if ln.kind == "separator"] == [
        ("separator", "a"), ("separator", "b"), ("separator", "my-model-2")]
    assert {ln.run: ln.model for ln in lines if ln.kind == "log"} == {
        run_id(1)[:12]: "a", run_id(2)[:12]: "b", run_id(3)[:12]: "my-model-2"}
    # Notes come back with the model of the file they were in.
    assert [(ln.text, ln.model) for ln in lines if ln.kind == "note"] == [
        ("health of a: ok", "a"), ("Docker answers again", "b")]
    assert [ln.text for ln in second.tail(10, run="current", model="my-model-2")] == ["c 0"]
    third = book()
    third.restore_run(run_id(2))
    assert {ln.model for ln in third.tail(100)} == {"b"}
    assert third.model_of(run_id(2)) == "b"
    third.begin_run(run_id(2), "b", resume=True)  # adopting it: its lines keep the model
    third.append("b after restart", "2026-01-01T00:00:09.000000000Z")
    assert third.tail(1)[0].model == "b"


def test_an_open_runs_file_is_never_pruned(book: Book) -> None:
    clock = Clock()
    logbook = book(clock=clock, max_files=3)
    long_lived = logbook.begin_run(run_id(1), "a")
    for n in range(2, 8):  # b restarts six times while a keeps serving
        clock.now += 1
        logbook.begin_run(run_id(n), "b")
        logbook.append(f"b run {n}")
        logbook.end_run(run_id(n))
    logbook.append("a still here", run=run_id(1))
    logbook.flush()
    assert long_lived.exists() and "a still here" in long_lived.read_text()
    assert [p.name[-16:-4] for p in logbook.run_files()] == [run_id(n)[:12] for n in (1, 6, 7)]


def test_the_ring_is_bounded_in_bytes_across_all_runs_together(book: Book) -> None:
    logbook = book(capacity=5000, max_bytes=1_000_000, max_line_bytes=100_000)
    logbook.begin_run(run_id(1), "a")
    logbook.begin_run(run_id(2), "b")
    for i in range(50):
        logbook.append(f"a {i} " + "x" * 50_000, run=run_id(1))
        logbook.append(f"b {i} " + "x" * 50_000, run=run_id(2))
    assert logbook.bytes_held <= 1_000_000
    kept = logbook.tail(5000)
    assert 10 <= len(kept) < 20
    assert [ln.text.split()[:2] for ln in kept[-2:]] == [["a", "49"], ["b", "49"]]


def test_a_full_disk_with_two_runs_open_stops_both_files_says_so_once_and_reopens_both(
    tmp_path: Path,
) -> None:
    from tests.fulldisk import fill, free, full_tmpfs

    ts = "2026-01-01T00:00:00.000000000Z"
    clock = Clock()
    with full_tmpfs(tmp_path / "state", filled=False) as state:
        logbook = Logbook(state / "logs", clock=clock)
        path_a = logbook.begin_run(run_id(1), "a")
        clock.now += 0.01
        path_b = logbook.begin_run(run_id(2), "b")
        logbook.append("a before", ts, run=run_id(1))
        logbook.append("b before", ts, run=run_id(2))
        fill(state)
        for i in range(200):
            logbook.append(f"a during {i} " + "z" * 100, ts, run=run_id(1))
            logbook.append(f"b during {i} " + "z" * 100, ts, run=run_id(2))
        assert logbook.write_error is not None and "No space left" in logbook.write_error
        assert logbook.open_runs() == [run_id(1)[:12], run_id(2)[:12]]  # memory keeps going
        assert len(logbook.tail(1000, model="a")) == 201 and len(logbook.tail(1000, model="b")) == 201
        notes = [ln.text for ln in logbook.tail(1000) if ln.kind == "note"]
        assert len(notes) == 1 and "keeping the log in memory only" in notes[0]
        # Room again: the next run's begin reopens every open run's file.
        free(state)
        clock.now += 0.01
        path_c = logbook.begin_run(run_id(3), "c")
        logbook.append("a after", ts, run=run_id(1))
        logbook.append("b after", ts, run=run_id(2))
        logbook.close()
        assert logbook.write_error is None
        for path, model in ((path_a, "a"), (path_b, "b")):
            # What fit before the disk filled (tmpfs pages), then the lines after: whole records.
            texts = file_texts(path)
            during = len(texts) - 2
            assert 0 <= during < 200
            assert texts == [f"{model} before", *(f"{model} during {i} " + "z" * 100 for i in range(during)),
                             f"{model} after"]
            assert all(rec.startswith("2026-") for rec in path.read_text().split("\n") if rec)
        assert "log files are written again" in path_c.read_text()


def test_the_replay_margin_reads_records_with_separators_inside_whole(book: Book) -> None:
    from llm_mcp.core.log_replay import recent_records

    logbook = book()
    path = logbook.begin_run(run_id(5), "a")
    texts = [f"line {i} {SEPARATORS} end" for i in range(3)]
    for i, text in enumerate(texts):
        logbook.append(text, f"2026-01-01T00:00:0{i}.000000000Z")
    logbook.end_run()
    since, records = recent_records(path)
    assert since == 1767225602.0 - 5.0
    assert records == {(f"2026-01-01T00:00:0{i}.000000000Z", text) for i, text in enumerate(texts)}
