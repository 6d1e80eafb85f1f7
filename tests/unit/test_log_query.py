"""tail_logs queries: a catastrophic filter fails fast off the event loop; replies are bounded."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from llm_mcp import protocol
from llm_mcp.core.log_query import FilterTimeout, LineFilter, query_logs
from llm_mcp.core.logbook import Logbook
from llm_mcp.protocol import ProtocolError

pytestmark = pytest.mark.anyio

# Backtracks catastrophically in `re` and in `regex` on lines without b or c.
CATASTROPHIC = r"(.*){1,100}[bc]"
LINE = "fake line {} " + "a" * 40


@pytest.fixture
def logbook(tmp_path: Path) -> Logbook:
    book = Logbook(tmp_path / "logs")
    book.begin_run("0" * 12, "a")
    for i in range(3000):
        book.append(LINE.format(i), flush=False)
    book.close()
    return book


async def test_a_catastrophic_filter_ends_with_a_clear_error_while_the_loop_keeps_running(
    logbook: Logbook,
) -> None:
    gaps: list[float] = []
    outcome: list[BaseException] = []

    async def query() -> None:
        try:
            await query_logs(logbook, lines=100, filter=CATASTROPHIC, run="all")
        except ProtocolError as exc:
            outcome.append(exc)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(query)
        last = time.monotonic()
        while not outcome and time.monotonic() - started < 10:
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    took = time.monotonic() - started
    [error] = outcome
    assert isinstance(error, ProtocolError)
    assert error.code == protocol.INVALID_PARAMS
    assert error.message == "filter took too long; simplify it"
    assert error.reason == "filter_timeout"
    assert took < 4
    assert max(gaps) < 0.1  # the event loop never waited on the scan


async def test_an_ordinary_filter_is_case_insensitive_and_gives_the_newest_matches(logbook: Logbook) -> None:
    result = await query_logs(logbook, lines=3, filter=r"LINE 29\d\d ", run="current")
    assert [ln["text"].split()[2] for ln in result["lines"]] == ["2997", "2998", "2999"]
    assert result["truncated"] is False and result["omitted"] == 0


async def test_an_invalid_filter_is_invalid_params_with_a_hint(logbook: Logbook) -> None:
    with pytest.raises(ProtocolError) as caught:
        await query_logs(logbook, filter="(unclosed")
    assert caught.value.code == protocol.INVALID_PARAMS
    assert caught.value.reason == "invalid_filter"
    assert "not a valid regex" in caught.value.message


async def test_a_reply_over_the_byte_budget_keeps_the_newest_lines_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    book = Logbook(tmp_path / "logs")
    book.begin_run("1" * 12, "a")
    for i in range(200):
        book.append(f"{i} " + "w" * 60_000, flush=False)
    result = await query_logs(book, lines=200, run="current", max_bytes=1_000_000)
    book.close()
    kept = result["lines"]
    assert result["truncated"] is True
    assert result["omitted"] == 200 - len(kept)
    assert 10 <= len(kept) < 17
    assert kept[-1]["text"].startswith("199 ")
    assert len(protocol.result(1, result)) < 1_000_000


def test_the_line_filter_raises_filter_timeout_within_its_bound() -> None:
    matcher = LineFilter(CATASTROPHIC)
    started = time.monotonic()
    with pytest.raises(FilterTimeout):
        matcher.search(LINE.format(1), timeout=0.1)
    assert time.monotonic() - started < 2
    assert matcher.search("ABC", timeout=0.1)


async def test_a_query_by_model_gives_only_its_lines_and_the_notes_about_it(tmp_path: Path) -> None:
    book = Logbook(tmp_path / "logs")
    book.begin_run("a" * 12, "alpha")
    book.begin_run("b" * 12, "beta")
    for i in range(5):
        book.append(f"alpha {i}", run="a" * 12, flush=False)
        book.append(f"beta {i}", run="b" * 12, flush=False)
    book.note("alpha is ready", model="alpha")
    book.note("Docker answers again")
    result = await query_logs(book, lines=3, filter="", run="all", model="alpha")
    assert [(ln["text"], ln["model"]) for ln in result["lines"]] == [
        ("alpha 3", "alpha"), ("alpha 4", "alpha"), ("alpha is ready", "alpha")]
    assert result["model"] == "alpha" and result["run"] == "all"
    current = await query_logs(book, lines=100, filter=r"[24]$", run="current", model="beta")
    assert [ln["text"] for ln in current["lines"]] == ["beta 2", "beta 4"]
    everything = await query_logs(book, lines=100)
    assert everything["model"] is None and len(everything["lines"]) == 12  # daemon-wide notes too
    for run in ("all", "current", "previous"):  # a model that never ran: no lines, no error
        unknown = await query_logs(book, lines=100, run=run, model="gamma")
        assert unknown["lines"] == [] and unknown["truncated"] is False
    book.close()


async def test_a_query_for_a_models_previous_run_reads_its_file(tmp_path: Path) -> None:
    book = Logbook(tmp_path / "logs", capacity=3)
    book.begin_run("1" * 12, "alpha")
    book.append("alpha first run")
    book.end_run()
    book.begin_run("2" * 12, "alpha")
    book.begin_run("3" * 12, "beta")
    for i in range(5):  # the first run leaves the ring
        book.append(f"beta {i}", run="3" * 12)
    result = await query_logs(book, lines=10, run="previous", model="alpha")
    book.close()
    assert [(ln["text"], ln["model"], ln["run"]) for ln in result["lines"]] == [
        ("alpha first run", "alpha", "1" * 12)]
