"""Long lines from a real container: bounded memory, whole lines, and restores that change nothing."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import psutil
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.log_lines import MAX_LINE_BYTES, cut_marker
from tests.conftest import FAKE_PROFILES, Setup, make_core, wait_until
from tests.daemons import Daemons, Raw, cli, socket_of
from tests.logs.conftest import extra

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
MIB = 1024 * 1024


def fake_line(n: int, size: int = 0, fill: str = "") -> str:
    """What the fake server prints for --fake-lines with --fake-line-bytes/--fake-line-fill."""
    text = f"fake line {n}" + (f" {fill}" if fill else "")
    need = size - len(text.encode()) - 1
    if need > 0:
        text += " " + (ALPHABET * (need // 26 + 1))[:need]
    return text


async def switch(core: Core, profile_id: str) -> None:
    with anyio.fail_after(30):
        job = await core.ensure(profile_id)
        await job.done.wait()
    assert job.result == "ready", job.to_dict()


@asynccontextmanager
async def running(setup: Setup) -> AsyncIterator[Core]:
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def test_a_40_kib_line_arrives_whole_with_no_timestamp_spliced_in(setup: Setup, core: Core) -> None:
    """Docker stores it as three entries of at most 16 KiB, each with its own timestamp."""
    setup.write(FAKE_PROFILES + extra("wide", "--fake-lines 3 --fake-line-bytes 40960 --fake-line-rate 0"))
    await switch(core, "wide")
    await wait_until(lambda: any(ln.text.startswith("fake line 3 ") for ln in core.logbook.tail(5)), 10)
    lines = [ln.text for ln in core.logbook.tail(100, run="current") if ln.text.startswith("fake line")]
    assert lines == [fake_line(n, 40960) for n in (1, 2, 3)]
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text) for text in lines)
    run_file = core.logbook.run_file(core.logbook.current_run)
    assert run_file is not None
    in_file = [rec.partition(" ")[2] for rec in run_file.read_text().split("\n")]
    assert [t for t in in_file if t.startswith("fake line")] == lines


async def test_1_mib_lines_keep_the_daemon_small_and_logs_n_200_works(setup: Setup, daemons: Daemons) -> None:
    """300 lines of 1 MiB: each is cut to 64 KiB with a marker; the ring stays bounded in bytes."""
    setup.write(FAKE_PROFILES + extra("huge", "--fake-lines 300 --fake-line-bytes 1048576 "
                                      "--fake-line-rate 30"))
    proc = daemons.start()
    daemon = psutil.Process(proc.pid)
    raw = await Raw.open(socket_of(setup))
    try:
        with anyio.fail_after(30):
            assert (await raw.call("switch", {"model": "huge", "wait": True}))["result"]["result"] == "ready"
        before = daemon.memory_info().rss
        peak = before
        with anyio.fail_after(90):
            while True:
                peak = max(peak, daemon.memory_info().rss)
                last = (await raw.call("tail_logs", {"lines": 1, "run": "current"}))["result"]["lines"]
                if last and last[-1]["text"].startswith("fake line 300 "):
                    break
                await anyio.sleep(0.2)
    finally:
        await raw.aclose()
    assert peak - before < 80 * MIB, f"the daemon grew by {(peak - before) / MIB:.0f} MiB"
    assert peak < 150 * MIB, f"the daemon reached {peak / MIB:.0f} MiB"

    done = cli(setup, "logs", "-n", "200", "--run", "current", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    texts = [ln["text"] for ln in result["lines"]]
    assert texts[-1] == fake_line(300, MIB)[:MAX_LINE_BYTES] + cut_marker(MIB - MAX_LINE_BYTES), (
        len(texts[-1]), texts[-1][:30], texts[-1][-80:])
    assert len(texts) + result["omitted"] == 200
    human = cli(setup, "logs", "-n", "200", timeout=60)
    assert human.returncode == 0, human.stderr
    assert "more bytes cut by llm-mcp" in human.stdout


SEPARATORS = r"a\rb\x0cc\x0bd\x1ce\x1df\x1eg\x85h\u2028i\u2029j"
DECODED = "a\rb\x0cc\x0bd\x1ce\x1df\x1eg\x85h\u2028i\u2029j"


async def test_separators_inside_lines_replay_unchanged_after_a_daemon_restart(setup: Setup) -> None:
    setup.write(FAKE_PROFILES + extra("odd", f"--fake-lines 20 --fake-line-rate 0 "
                                      f"--fake-line-fill '{SEPARATORS}'"))
    expected = [fake_line(n, fill=DECODED) for n in range(1, 21)]
    async with running(setup) as first:
        await switch(first, "odd")
        await wait_until(lambda: any(ln.text.startswith("fake line 20 ") for ln in first.logbook.tail(20)),
                         10)
        before = [ln.text for ln in first.logbook.tail(100, run="current") if ln.text.startswith("fake")]
    assert before == expected
    async with running(setup) as second:
        await wait_until(lambda: second.status()["state"] == "ready", 15)
        after = [ln.text for ln in second.logbook.tail(100, run="current") if ln.text.startswith("fake")]
    assert after == expected


async def test_after_a_restart_logs_of_all_runs_include_the_earlier_runs_oldest_first(setup: Setup) -> None:
    async with running(setup) as first:
        await switch(first, "fake-a")
        await switch(first, "fake-b")
        runs = [ln.run for ln in first.logbook.tail(5000) if ln.kind == "log"]
    first_run, second_run = dict.fromkeys(runs)
    async with running(setup) as second:
        await wait_until(lambda: second.status()["state"] == "ready", 15)
        lines = second.logbook.tail(5000)
    restored = [ln.text for ln in lines if ln.kind == "separator" and "restored run" in ln.text]
    assert [text.split()[3] for text in restored] == [first_run, second_run]
    order = [ln.run for ln in lines if ln.kind == "log"]
    assert order.index(first_run) < order.index(second_run)
    assert any("tiny-a.gguf" in ln.text for ln in lines if ln.run == first_run)


async def test_tail_right_after_a_switch_already_has_the_load_log(setup: Setup, core: Core) -> None:
    """The job reports ready only once the follower delivered what the server printed."""
    for profile_id in ("fake-a", "fake-b") * 4:
        await switch(core, profile_id)
        texts = [ln.text for ln in core.logbook.tail(100, run="current")]
        assert any("model loaded" in text for text in texts), texts
        assert any("listening on" in text for text in texts), texts
