"""Docker is the truth: a new core adopts what runs, and notices what vanishes behind its back."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from llm_mcp.core.scheduler import Core, SwitchRefused
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ContainerCounter, Setup, make_core, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SLOW = f"""
[slow]
name = Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 3
"""


@asynccontextmanager
async def running(setup: Setup) -> AsyncIterator[Core]:
    """A core for as long as the block runs; leaving the block kills it (the container stays)."""
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def test_a_new_core_adopts_the_container_a_killed_core_left_loading(
    setup: Setup, counter: ContainerCounter
) -> None:
    setup.write(FAKE_PROFILES + SLOW)
    async with running(setup) as first:
        job = await first.switch("slow")
        await wait_until(lambda: job.phase not in ("queued", "starting"), 10)
        assert first.status()["state"] == "loading"
        left = counter.list()
    assert len(left) == 1
    assert counter.list() == left  # killing the core does not touch the container

    async with running(setup) as second:
        status = second.status()
        assert status["container"]["id"] == left[0][:12]
        assert status["job"]["kind"] == "adopt"
        # Asking for the profile being adopted joins the adoption; another one is refused.
        adopting = second.current_job
        assert adopting is not None
        assert await second.switch("slow") is adopting
        with pytest.raises(SwitchRefused):
            await second.switch("fake-a")
        with anyio.fail_after(10):
            await wait_until(lambda: second.status()["state"] == "ready", 10)
        status = second.status()
        assert status["profile"]["id"] == "slow"
        assert status["stale_config"] is False
        assert status["reason"] is None
        assert counter.list() == left
    assert counter.max_alive == 1


async def test_a_new_core_adopts_a_ready_container_without_reloading_it(
    setup: Setup, counter: ContainerCounter
) -> None:
    async with running(setup) as first:
        with anyio.fail_after(20):
            job = await first.switch("fake-a")
            await job.done.wait()
        started_at = first.status()["container"]["started_at"]
        left = counter.list()
    async with running(setup) as second:
        await wait_until(lambda: second.status()["state"] == "ready", 10)
        status = second.status()
        assert counter.list() == left
        assert status["container"]["started_at"] == started_at
        assert status["profile"]["id"] == "fake-a"
        # Its log history came back from the run file.
        assert any("model loaded" in ln.text for ln in second.logbook.tail(100, run="current"))
        # Asking for the adopted profile is already done, no restart.
        again = await second.switch("fake-a")
        assert again.detail == "already loaded"
    assert counter.max_alive == 1


async def test_an_adopted_container_with_a_changed_profile_is_reported_stale_until_switched_again(
    setup: Setup, counter: ContainerCounter
) -> None:
    async with running(setup) as first:
        with anyio.fail_after(20):
            job = await first.switch("fake-a")
            await job.done.wait()
        left = counter.list()
    setup.write(FAKE_PROFILES.replace("flags = --fake-tps 100", "flags = --fake-tps 100\nctx_size = 512"))
    async with running(setup) as second:
        await wait_until(lambda: second.status()["state"] == "ready", 10)
        status = second.status()
        assert counter.list() == left  # adopted, not restarted
        assert status["stale_config"] is True
        assert "stale config" in status["reason"]
        assert status["hint"]
        with anyio.fail_after(20):
            job = await second.switch("fake-a")
            await job.done.wait()
        assert job.result == "ready"
        assert job.detail != "already loaded"
        status = second.status()
        assert status["stale_config"] is False
        assert counter.list() != left
        inspected = counter.runtime.client.api.inspect_container(counter.list()[0])
        assert "512" in inspected["Args"]


async def test_a_leftover_dead_container_is_removed_and_the_state_is_stopped(
    setup: Setup, counter: ContainerCounter
) -> None:
    setup.write(FAKE_PROFILES + f"\n[fragile]\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                "flags = --fake-scenario crash-after-ready --fake-exit-after 0.3\n")
    async with running(setup) as first:
        with anyio.fail_after(20):
            job = await first.switch("fragile")
            await job.done.wait()
        assert job.result == "ready"
    api = counter.runtime.client.api
    with anyio.fail_after(10):
        while api.inspect_container(counter.list()[0])["State"]["Running"]:
            await anyio.sleep(0.05)
    async with running(setup) as second:
        assert second.status()["state"] == "stopped"
        assert counter.list() == []


async def test_removing_the_container_by_hand_turns_ready_into_stopped_within_a_second(
    setup: Setup, core: Core
) -> None:
    with anyio.fail_after(20):
        job = await core.switch("fake-a")
        await job.done.wait()
    container = core.status()["container"]["id"]
    subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
    removed_at = time.monotonic()
    await wait_until(lambda: core.status()["state"] != "ready", 1.0)
    assert time.monotonic() - removed_at < 1.0
    status = core.status()
    assert status["state"] == "stopped", status
    assert "removed outside llm-mcp" in status["reason"]
    assert status["container"] is None
    assert status["profile"] is None


async def test_stopping_the_container_by_hand_turns_ready_into_stopped(setup: Setup, core: Core) -> None:
    with anyio.fail_after(20):
        job = await core.switch("fake-b")
        await job.done.wait()
    container = core.status()["container"]["id"]
    subprocess.run(["docker", "stop", container], check=True, capture_output=True)
    await wait_until(lambda: core.status()["state"] != "ready", 2.0)
    status = core.status()
    assert status["state"] == "stopped", status
    assert "stopped outside llm-mcp" in status["reason"]


async def test_a_new_core_adopts_a_ready_container_at_once_and_the_first_switch_is_not_refused(
    setup: Setup, counter: ContainerCounter
) -> None:
    async with running(setup) as first:
        with anyio.fail_after(20):
            await (await first.switch("fake-a")).done.wait()
    async with running(setup) as second:
        status = second.status()
        assert status["state"] == "ready", status
        assert status["job"] is None  # no adoption job for a server that answers /health 200
        with anyio.fail_after(20):
            job = await second.switch("fake-b")  # not "busy: adopt in progress"
            await job.done.wait()
        assert job.result == "ready"
    assert counter.max_alive == 1


STUBBORN = f"""
[stubborn]
name = Stubborn
model = tiny-a.gguf
image = {FAKE_IMAGE}
stop_grace = 15
flags = --fake-ignore-sigterm
"""


async def test_a_daemon_killed_while_stopping_the_previous_model_leaves_a_status_that_says_so(
    setup: Setup,
) -> None:
    import os
    import signal

    from tests.daemons import Daemons, Raw, socket_of

    setup.write(FAKE_PROFILES + STUBBORN)
    daemons = Daemons(setup)
    try:
        proc = daemons.start()
        raw = await Raw.open(socket_of(setup))
        reply = await raw.call("switch", {"model": "stubborn", "wait": True, "timeout": 30})
        assert reply["result"]["result"] == "ready", reply
        await raw.call("switch", {"model": "fake-a"})
        with anyio.fail_after(10):
            while (await raw.call("status", {"gpu": False}))["result"]["state"] != "stopping":
                await anyio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # while Docker waits out the 15 s grace
        proc.wait(10)
        await raw.aclose()
        daemons.start()
        raw = await Raw.open(socket_of(setup))
        status = (await raw.call("status", {"gpu": False}))["result"]
        await raw.aclose()
        assert status["state"] == "stopped", status
        assert status["reason_code"] == "switch_interrupted"
        assert f"pid {proc.pid}" in status["reason"]
        assert "switching from Stubborn to Fake A" in status["reason"]
        assert "nothing is running" in status["reason"]
        assert status["container"] is None
        assert setup.containers() == []  # the one it was stopping is gone, none half-started
    finally:
        daemons.cleanup()
