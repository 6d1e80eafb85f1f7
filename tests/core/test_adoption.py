"""A core that starts beside a running container adopts it instead of loading it again."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.runtime.memory import Script
from tests.core.conftest import World

pytestmark = pytest.mark.anyio


async def test_a_ready_container_found_at_start_is_adopted_at_once_without_a_job(world: World) -> None:
    left = world.start_by_hand("alpha")
    with anyio.fail_after(1):
        while await world.health() != "ok":
            await anyio.sleep(0.002)
    async with world.core() as core:
        status = core.status()
        assert status["state"] == "ready", status
        assert status["job"] is None  # nothing for a first switch to be refused by
        assert status["container"]["id"] == left.short_id
        assert status["container"]["started_at"] == left.started_at
        assert status["stale_config"] is False
        job = await core.switch("alpha")
        assert job.done.is_set() and job.detail == "already loaded"
        other = await core.switch("beta")  # not refused: no adoption job in the way
        with anyio.fail_after(1):
            await other.done.wait()
        assert other.result == "ready", other.to_dict()
    assert world.running() == ["beta"]


async def test_a_container_found_loading_at_start_is_adopted_by_a_job_that_a_switch_joins(
    world: World,
) -> None:
    world.script("alpha", Script(load_s=30))
    left = world.start_by_hand("alpha")
    async with world.core() as core:
        status = core.status()
        assert status["job"] is not None and status["job"]["kind"] == "adopt", status
        adopting = core.current_job
        assert adopting is not None
        assert await core.switch("alpha") is adopting
        world.engine.advance(30)
        with anyio.fail_after(1):
            await adopting.done.wait()
        assert adopting.result == "ready", adopting.to_dict()
        status = core.status()
        assert status["state"] == "ready" and status["profile"]["id"] == "alpha"
        assert status["container"]["id"] == left.short_id  # the same container, not a reload
    assert [c.id for c in world.containers()] == [left.id]


async def test_leftover_stopped_containers_are_removed_at_start(world: World) -> None:
    left = world.start_by_hand("alpha")
    world.engine.kill(left.id)
    async with world.core() as core:
        assert core.status()["state"] == "stopped"
        assert world.containers() == []


async def test_containers_of_another_instance_are_neither_adopted_nor_touched(world: World) -> None:
    other = World(world.root / "other")  # another instance on the same engine
    other.engine, other.runtime = world.engine, world.engine.runtime(other.instance)
    other.write(port=18081)
    theirs = other.start_by_hand("beta")
    async with world.core() as core:
        assert core.status()["state"] == "stopped"
        assert core.container_id is None
    assert [c.id for c in world.containers()] == [theirs.id]
