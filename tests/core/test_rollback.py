"""A load that fails puts back what ran before (rollback), unless the request said not to."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import World

pytestmark = pytest.mark.anyio

CORRUPT = Script.fails("llama_model_load: error loading model: invalid magic characters", code=1)


async def switched(core: Core, profile_id: str, **options: bool) -> dict[str, Any]:
    job = await core.switch(profile_id, **options)
    with anyio.fail_after(1):
        await job.done.wait()
    return job.to_dict()


async def test_a_failed_load_restores_the_previous_profile_and_says_so(world: World, core: Core) -> None:
    assert (await switched(core, "alpha"))["result"] == "ready"
    first = core.container_id
    world.script("beta", CORRUPT)
    job = await switched(core, "beta")
    assert job["result"] == "failed" and job["reason"] == "model_corrupt", job
    assert job["restored"] is True and job["previous"] == "alpha"
    assert any("invalid magic" in line for line in job["log_lines"])
    status = core.status()
    assert status["state"] == "ready" and status["profile"]["id"] == "alpha"
    assert "Alpha restored" in status["reason"]
    assert world.running() == ["alpha"]
    assert [c.id for c in world.containers()] == [core.container_id]  # beta's is removed
    assert core.container_id != first  # alpha was loaded again


async def test_without_rollback_a_failed_load_leaves_nothing_running(world: World, core: Core) -> None:
    assert (await switched(core, "alpha"))["result"] == "ready"
    world.script("beta", CORRUPT)
    job = await switched(core, "beta", rollback=False)
    assert job["result"] == "failed" and job["reason"] == "model_corrupt", job
    assert job["restored"] is None  # no restore was tried
    status = core.status()
    assert status["state"] == "failed" and status["profile"] is None
    assert world.containers() == []


async def test_a_failed_restore_ends_failed_with_both_reasons(world: World, core: Core) -> None:
    assert (await switched(core, "alpha"))["result"] == "ready"
    world.script("beta", CORRUPT)
    world.script("alpha", Script.fails("ggml_backend_cuda_buffer_type_alloc_buffer: out of memory"))
    job = await switched(core, "beta")
    assert job["result"] == "failed" and job["restored"] is False, job
    status = core.status()
    assert status["state"] == "failed"
    assert "restoring Alpha also failed" in status["reason"]
    assert world.containers() == []
