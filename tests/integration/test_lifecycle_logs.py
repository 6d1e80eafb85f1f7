"""Logs across switches and restarts, draining a busy server, and the stop grace."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from llm_mcp.core.logbook import LogLine
from llm_mcp.core.scheduler import Core
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ContainerCounter, Setup, make_core, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

NUMBERED = re.compile(r"^fake line (\d+)$")


def extra(profile_id: str, flags: str, more: str = "") -> str:
    return (f"\n[{profile_id}]\nname = {profile_id.title()}\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
            f"flags = {flags}\n{more}")


async def switch(core: Core, profile_id: str, *, force: bool = False) -> None:
    with anyio.fail_after(20):
        job = await core.switch(profile_id, force=force)
        await job.done.wait()
    assert job.result == "ready", job.to_dict()


def numbers(lines: list[LogLine]) -> list[int]:
    return [int(m.group(1)) for ln in lines if (m := NUMBERED.match(ln.text))]


async def test_the_ring_buffer_holds_three_runs_with_a_separator_before_each(
    setup: Setup, core: Core
) -> None:
    for profile_id in ("fake-a", "fake-b", "fake-a"):
        await switch(core, profile_id)
    lines = core.logbook.tail(5000)
    separators = [(i, ln.text) for i, ln in enumerate(lines) if ln.kind == "separator"]
    assert [text for _, text in separators] == [
        "--- switching to Fake A ---", "--- switching to Fake B ---", "--- switching to Fake A ---"]
    runs = []
    bounds = [i for i, _ in separators] + [len(lines)]
    for start, end in itertools.pairwise(bounds):
        run_lines = [ln for ln in lines[start + 1:end] if ln.kind == "log"]
        assert any("model loaded" in ln.text for ln in run_lines)
        assert len({ln.run for ln in run_lines}) == 1
        runs.append(run_lines[0].run)
    assert len(set(runs)) == 3
    assert "fake-b" in lines[bounds[1] + 1:bounds[2]][1].text or any(
        "tiny-b.gguf" in ln.text for ln in lines[bounds[1]:bounds[2]])
    # Each run also has its own file under the state dir.
    files = core.logbook.run_files()
    assert [f.name.rsplit("-", 1)[1] for f in files] == [f"{run}.log" for run in runs]


async def test_numbered_lines_from_the_server_arrive_once_each_and_in_order(
    setup: Setup, core: Core
) -> None:
    setup.write(FAKE_PROFILES + extra("chatty", "--fake-lines 2000 --fake-line-rate 2000"))
    await switch(core, "chatty")
    await wait_until(lambda: any(ln.text == "fake line 2000" for ln in core.logbook.tail(50)), 10)
    assert numbers(core.logbook.tail(5000, run="current")) == list(range(1, 2001))
    run_file = core.logbook.run_file(core.logbook.current_run)
    assert run_file is not None
    in_file = [int(m.group(1)) for rec in run_file.read_text().splitlines()
               if (m := NUMBERED.match(rec.partition(" ")[2]))]
    assert in_file == list(range(1, 2001))


@asynccontextmanager
async def running(setup: Setup) -> AsyncIterator[Core]:
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def test_numbered_lines_survive_a_core_restart_without_loss_or_duplicates(setup: Setup) -> None:
    setup.write(FAKE_PROFILES + extra("chatty", "--fake-lines 1500 --fake-line-rate 500"))
    async with running(setup) as first:
        await switch(first, "chatty")
        await wait_until(lambda: len(numbers(first.logbook.tail(5000, run="current"))) > 300, 10)
    async with running(setup) as second:
        with anyio.fail_after(15):
            while "fake line 1500" not in [ln.text for ln in second.logbook.tail(20)]:
                await anyio.sleep(0.05)
        assert numbers(second.logbook.tail(5000, run="current")) == list(range(1, 1501))


async def test_a_switch_waits_for_a_busy_server_to_drain(setup: Setup, core: Core) -> None:
    setup.write(FAKE_PROFILES + extra("busy", "--fake-busy-seconds 2"))
    await switch(core, "busy")
    started = time.monotonic()
    with anyio.fail_after(20):
        job = await core.switch("fake-a")
        await wait_until(lambda: job.phase != "queued", 5)
        assert job.phase == "draining"
        assert core.status()["job"]["phase"] == "draining"
        await job.done.wait()
    assert job.result == "ready"
    phases = [p["phase"] for p in job.phases]
    assert phases.index("draining") < phases.index("stopping_previous")
    assert time.monotonic() - started >= 1.0


async def test_force_skips_the_drain(setup: Setup, core: Core) -> None:
    setup.write(FAKE_PROFILES + extra("busy", "--fake-busy-seconds 5"))
    await switch(core, "busy")
    started = time.monotonic()
    with anyio.fail_after(20):
        job = await core.switch("fake-a", force=True)
        await job.done.wait()
    assert job.result == "ready"
    assert "draining" not in [p["phase"] for p in job.phases]
    assert time.monotonic() - started < 4


async def test_the_drain_gives_up_after_drain_timeout_and_switches_anyway(setup: Setup, core: Core) -> None:
    setup.write(FAKE_PROFILES.replace("flags = --fake-load-seconds 0.5", "flags = --fake-load-seconds 0.5\n"
                                      "drain_timeout = 1")
                + extra("busy", "--fake-busy-seconds 30"))
    await switch(core, "busy")
    with anyio.fail_after(20):
        job = await core.switch("fake-b")
        await job.done.wait()
    assert job.result == "ready"
    draining = next(p["at"] for p in job.phases if p["phase"] == "draining")
    stopping = next(p["at"] for p in job.phases if p["phase"] == "stopping_previous")
    assert 0.5 <= stopping - draining <= 2.5
    assert any("switching anyway" in ln.text for ln in core.logbook.tail(50))


async def test_a_server_that_ignores_sigterm_is_killed_after_the_stop_grace(
    setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    setup.write(FAKE_PROFILES + extra("stubborn", "--fake-ignore-sigterm", "stop_grace = 1\n"))
    await switch(core, "stubborn")
    with anyio.fail_after(15):
        stop = await core.stop_model()
        await stop.done.wait()
    assert stop.result == "stopped"
    stopping = next(p["at"] for p in stop.phases if p["phase"] == "stopping_previous")
    took = stop.phases[-1]["at"] - stopping
    assert 1.0 <= took < 4.0, stop.phases
    assert any("ignored (--fake-ignore-sigterm)" in ln.text for ln in core.logbook.tail(50))
    assert counter.list() == []
    assert core.status()["state"] == "stopped"


async def test_lines_delivered_out_of_timestamp_order_are_kept_and_a_replay_is_deduplicated(
    setup: Setup, core: Core
) -> None:
    """Docker stamps stdout and stderr on separate pipes: a later-stamped stderr line can
    arrive before an earlier stdout line. Both must be kept; only restored lines are skipped."""
    from llm_mcp.core.supervisor import Supervisor
    from llm_mcp.runtime.base import ContainerInfo

    info = ContainerInfo(id="f" * 64, name="test", status="running", profile="fake-a", config_hash="",
                         image="test", started_at=None, exit_code=None, oom_killed=False, pid=None)
    slot = core._new_slot("fake-a", None, "local")
    sup = Supervisor(container=info, profile=None, model="fake-a", engine="local")
    slot.sup = sup
    core.logbook.begin_run(info.id, "fake-a")
    sup.replayed = {("2026-01-01T00:00:00.500000000Z", "restored line")}
    feed = [("2026-01-01T00:00:00.500000000Z", "restored line"),  # replay overlap: skipped
            ("2026-01-01T00:00:02.000000000Z", "stderr, stamped later"),
            ("2026-01-01T00:00:01.000000000Z", "stdout, stamped earlier")]
    core._on_lines(sup, feed)
    slot.sup = None
    assert [ln.text for ln in core.logbook.tail(10, run="current")] == [
        "stderr, stamped later", "stdout, stamped earlier"]
