"""The engine going away is a state; what still runs is adopted again when it is back."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import World, ready, wait_until

pytestmark = pytest.mark.anyio



async def test_engine_loss_under_a_ready_model_says_so_and_the_model_is_adopted_again(
    world: World, core: Core
) -> None:
    await ready(core, "alpha")
    before = core.status()["container"]
    world.engine.stop_engine(live_restore=True)
    await wait_until(lambda: core.status()["reason_code"] == "docker_unavailable")
    status = core.status()
    assert status["docker"]["available"] is False and status["hint"], status
    assert status["container"]["id"] == before["id"]  # the last one known, not forgotten
    assert await world.health() == "ok"  # it still serves: only the engine is away
    world.engine.start_engine()
    await wait_until(lambda: core.status()["docker"]["available"] and core.status()["reason"] is None)
    status = core.status()
    assert status["state"] == "ready", status
    assert status["container"]["id"] == before["id"]
    assert status["container"]["started_at"] == before["started_at"]  # no reload
    assert status["job"] is None
    assert len(world.containers()) == 1


async def test_a_container_that_ended_while_the_engine_was_away_is_reported_gone(
    world: World, core: Core
) -> None:
    await ready(core, "alpha")
    world.engine.stop_engine(live_restore=False)  # its containers stop with it
    await wait_until(lambda: core.status()["reason_code"] == "docker_unavailable")
    world.engine.start_engine()
    await wait_until(lambda: core.status()["state"] == "stopped")
    status = core.status()
    assert status["reason_code"] == "container_gone", status
    assert status["container"] is None
    assert world.containers() == []  # the dead leftover is cleared


async def test_a_load_in_flight_when_the_engine_stops_fails_with_docker_unavailable(
    world: World, core: Core
) -> None:
    world.script("alpha", Script(load_s=30))
    job = await core.switch("alpha")
    await wait_until(lambda: job.phase == "loading")
    world.engine.stop_engine()
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "failed" and job.failure is not None, job.to_dict()
    assert job.failure.reason == "docker_unavailable"
    meanwhile = await core.switch("beta")  # fails at once with the outage; touches nothing
    with anyio.fail_after(1):
        await meanwhile.done.wait()
    assert meanwhile.failure is not None and meanwhile.failure.reason == "docker_unavailable"
    world.engine.start_engine()
    await wait_until(lambda: core.current_job is not None and core.current_job.kind == "adopt")
    assert world.running() == ["alpha"]  # the same container, still loading: adopted, not reloaded
    world.engine.advance(30)
    await wait_until(lambda: core.status()["state"] == "ready")
    assert world.running() == ["alpha"]
