"""A switch is a job: joined by the same request, refused for another, replaced with force."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core, Job, SwitchRefused
from llm_mcp.runtime.memory import Script
from tests.core.conftest import World, wait_until

pytestmark = pytest.mark.anyio

SLOW = Script(load_s=30)  # loads until the test moves the clock on: never done too early


async def loading(core: Core, profile_id: str) -> Job:
    job = await core.switch(profile_id)
    await wait_until(lambda: job.phase == "loading")
    return job


async def test_a_second_request_for_the_loading_profile_joins_the_same_job(world: World, core: Core) -> None:
    world.script("alpha", SLOW)
    first = await loading(core, "alpha")
    second = await core.switch("alpha")
    assert second is first
    assert core.status()["job"]["id"] == first.id
    world.engine.advance(30)
    with anyio.fail_after(1):
        await first.done.wait()
    assert first.result == "ready", first.to_dict()
    assert core.status()["state"] == "ready"
    assert world.running() == ["alpha"]
    assert len(world.containers()) == 1


async def test_a_request_for_another_profile_is_refused_naming_the_job_in_flight(
    world: World, core: Core
) -> None:
    world.script("alpha", SLOW)
    first = await loading(core, "alpha")
    with pytest.raises(SwitchRefused) as refused:
        await core.switch("beta")
    assert refused.value.job is first
    assert first.id in str(refused.value) and "'alpha'" in str(refused.value)
    assert "force" in str(refused.value)
    with pytest.raises(SwitchRefused):
        await core.stop_model()
    world.engine.advance(30)
    with anyio.fail_after(1):
        await first.done.wait()
    assert first.result == "ready"
    assert core.status()["profile"]["id"] == "alpha"
    assert world.running() == ["alpha"]


async def test_force_replaces_the_loading_job_which_ends_cancelled(world: World, core: Core) -> None:
    world.script("alpha", Script(load_s=30))
    first = await loading(core, "alpha")
    second = await core.switch("beta", force=True)
    with anyio.fail_after(1):
        await second.done.wait()
    assert first.done.is_set() and first.result == "cancelled"
    assert first.replaced_by == second.id
    assert second.result == "ready", second.to_dict()
    assert core.status()["profile"]["id"] == "beta"
    assert core.current_job is None
    assert [c.profile for c in world.containers()] == ["beta"]  # the half-loaded alpha is gone


async def test_a_switch_to_the_ready_profile_is_a_finished_job_that_touches_nothing(
    world: World, core: Core
) -> None:
    job = await core.switch("alpha")
    with anyio.fail_after(1):
        await job.done.wait()
    before = world.containers()
    again = await core.switch("alpha")
    assert again is not job and again.done.is_set()
    assert again.result == "ready" and again.detail == "already loaded"
    assert world.containers() == before
