"""Two fake models print at once on real Docker: each line is tagged with its model, each run file
holds only its own container's lines, and a restarted daemon reads them back with their tags."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from llm_mcp.core.log_query import query_logs
from llm_mcp.core.logbook import LogLine
from llm_mcp.core.scheduler import Core
from tests.conftest import FAKE_PROFILES, Setup, free_port, make_core, wait_until
from tests.logs.conftest import extra

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

LINES = 500
RATE = 100  # lines/s: five seconds each, so the two streams overlap


def profiles() -> str:
    """left and right: no GPU and their own ports, so the two do not conflict and run at once."""
    return FAKE_PROFILES + "".join(
        extra(side, f"--fake-lines {LINES} --fake-line-rate {RATE} --fake-line-fill {side}",
              f"gpus = none\nport = {free_port()}\n") for side in ("left", "right"))

FAKE_LINE = re.compile(r"^fake line (\d+) (\w+)$")


@asynccontextmanager
async def running(setup: Setup) -> AsyncIterator[Core]:
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


def numbered(lines: list[LogLine], side: str) -> list[int]:
    return [int(m.group(1)) for ln in lines if (m := FAKE_LINE.match(ln.text)) and m.group(2) == side]


async def test_two_models_printing_at_once_keep_their_lines_apart_in_memory_in_files_and_after_a_restart(
    setup: Setup,
) -> None:
    setup.write(profiles())
    async with running(setup) as first:
        with anyio.fail_after(60):
            jobs = [await first.ensure(side) for side in ("left", "right")]
            for job in jobs:
                await job.done.wait()
        assert [job.result for job in jobs] == ["ready", "ready"], [job.to_dict() for job in jobs]
        assert len(setup.containers()) == 2
        book = first.logbook

        def printed_all(side: str) -> bool:
            return numbered(book.tail(5, model=side), side)[-1:] == [LINES]

        await wait_until(lambda: printed_all("left") and printed_all("right"), 30)
        seqs = {side: [ln.seq for ln in book.tail(5000, model=side) if ln.kind == "log"]
                for side in ("left", "right")}
        assert seqs["right"][0] < seqs["left"][-1] and seqs["left"][0] < seqs["right"][-1]  # interleaved
        assert len(book.open_runs()) == 2
        for side, other in (("left", "right"), ("right", "left")):
            mine = book.tail(5000, model=side)
            assert numbered(mine, side) == list(range(1, LINES + 1))
            assert numbered(mine, other) == []
            assert {ln.model for ln in mine} == {side}
            assert numbered(book.tail(5000, run="current", model=side), side) == list(range(1, LINES + 1))
            run_file = book.run_file(book.current_run_of(side) or "")
            assert run_file is not None and f"-{side}-" in run_file.name
            texts = [rec.partition(" ")[2] for rec in run_file.read_text().split("\n") if rec]
            assert [int(m.group(1)) for t in texts if (m := FAKE_LINE.match(t))] == list(range(1, LINES + 1))
            assert not any(t.endswith(f" {other}") for t in texts)
        reply = await query_logs(book, lines=3, filter=r"line \d+ left", run="current", model="left")
        assert [ln["text"] for ln in reply["lines"]] == [f"fake line {n} left" for n in (498, 499, 500)]
        assert {ln["model"] for ln in reply["lines"]} == {"left"}
    async with running(setup) as second:  # the containers keep running: it adopts both
        await wait_until(lambda: {m["id"]: m["state"] for m in second.status()["models"]}
                         == {"left": "ready", "right": "ready"}, 20)
        for side in ("left", "right"):
            restored = second.logbook.tail(5000, model=side)
            assert numbered(restored, side) == list(range(1, LINES + 1))  # once each, with its tag
            assert {ln.model for ln in restored if ln.kind == "log"} == {side}
