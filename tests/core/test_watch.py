"""What happens to a running container behind the core's back becomes its state."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import World, ready, wait_until

pytestmark = pytest.mark.anyio



async def test_a_crash_after_ready_turns_the_state_failed_with_its_last_lines(
    world: World, core: Core
) -> None:
    world.script("alpha", Script.crashes_after_ready(
        "/src/ggml/ggml-cpu.c:123: GGML_ASSERT(ne > 0) failed", after=30, code=134))
    container = await ready(core, "alpha")
    world.engine.advance(30)
    await wait_until(lambda: core.status()["state"] == "failed")
    status = core.status()
    assert status["reason_code"] == "crashed" and "signal 6" in status["reason"], status
    crash = status["last_switch"]
    assert crash["kind"] == "crash" and crash["result"] == "failed" and crash["profile"] == "alpha"
    assert any("GGML_ASSERT" in line for line in crash["log_lines"]), crash["log_lines"]
    assert status["container"] is None
    [left] = world.containers()  # the dead container is kept (its logs) until the next switch
    assert left.id == container and left.exit_code == 134 and not left.running


async def test_removing_the_container_outside_turns_ready_into_stopped(world: World, core: Core) -> None:
    container = await ready(core, "alpha")
    world.engine.remove(container)
    await wait_until(lambda: core.status()["state"] == "stopped")
    status = core.status()
    assert status["reason_code"] == "container_removed", status
    assert "removed outside llm-mcp" in status["reason"]
    assert status["container"] is None and status["profile"] is None
    assert world.containers() == []


async def test_stopping_the_container_outside_turns_ready_into_stopped(world: World, core: Core) -> None:
    container = await ready(core, "alpha")
    world.engine.stop(container)
    await wait_until(lambda: core.status()["state"] == "stopped")
    status = core.status()
    assert status["reason_code"] == "container_stopped", status
    assert "stopped outside llm-mcp" in status["reason"]


async def test_removing_the_container_while_it_loads_fails_the_job_as_removed(
    world: World, core: Core
) -> None:
    world.script("alpha", Script(load_s=30))
    job = await core.switch("alpha")
    await wait_until(lambda: job.phase == "loading")
    assert core.container_id is not None
    world.engine.remove(core.container_id)
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "failed" and job.failure is not None, job.to_dict()
    assert job.failure.reason == "container_removed"
    assert world.containers() == []


async def test_a_load_that_makes_no_progress_for_stall_timeout_fails_as_stalled(
    world: World, core: Core
) -> None:
    world.script("alpha", Script.stalls())
    job = await core.switch("alpha")
    # The core has seen its first line and its first /health 503 (both count as progress).
    await wait_until(lambda: core.status()["health"] == "loading" and any(
        "loading model" in ln.text for ln in core.logbook.tail(10, run="current")))
    assert not job.done.is_set()
    world.engine.advance(5 + 0.5)  # past stall_timeout = 5, far before load_timeout = 60
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "failed" and job.failure is not None, job.to_dict()
    assert job.failure.reason == "stalled"
    assert core.status()["state"] == "failed"
    assert world.containers() == []


async def test_a_load_that_keeps_printing_but_outlasts_load_timeout_fails_as_timeout(
    world: World, core: Core
) -> None:
    world.write(stall_timeout=100, load_timeout=10)
    lines = tuple(f"load_tensors: part {i}" for i in range(2000))  # progress all along
    world.script("alpha", Script(load_s=1000, load_lines=lines))
    job = await core.switch("alpha")
    await wait_until(lambda: job.phase not in ("queued", "starting"))
    world.engine.advance(11)
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.failure is not None and job.failure.reason == "timeout", job.to_dict()
    assert world.containers() == []
