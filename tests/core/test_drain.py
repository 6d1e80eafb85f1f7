"""A switch lets the running model finish what it generates (drain); force does not wait."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from tests.core.conftest import World, ready, wait_until

pytestmark = pytest.mark.anyio



async def test_a_switch_waits_for_busy_slots_to_finish_before_stopping_the_model(
    world: World, core: Core
) -> None:
    alpha = await ready(core, "alpha")
    world.engine.busy(alpha, seconds=1.5)  # on the stand-in's clock; drain_timeout is 2 s
    job = await core.switch("beta")
    await wait_until(lambda: job.phase == "draining")
    await anyio.sleep(0.3)  # more than one look at /slots
    assert job.phase == "draining"
    assert world.running() == ["alpha"]  # still serving while it drains
    world.engine.advance(1.5)  # the generation ends
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert "still generating" not in "".join(ln.text for ln in core.logbook.tail(50))
    assert world.running() == ["beta"]


async def test_force_skips_the_drain_and_replaces_a_busy_model_at_once(world: World, core: Core) -> None:
    alpha = await ready(core, "alpha")
    world.engine.busy(alpha, seconds=30)
    job = await core.switch("beta", force=True)
    with anyio.fail_after(2):  # nowhere near the 30 s of generation
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert "draining" not in [p["phase"] for p in job.phases]
    assert world.running() == ["beta"]


async def test_a_model_still_busy_after_drain_timeout_is_replaced_anyway(world: World, core: Core) -> None:
    world.write(drain_timeout=0.1)
    alpha = await ready(core, "alpha")
    world.engine.busy(alpha, seconds=30)
    job = await core.switch("beta")
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert "draining" in [p["phase"] for p in job.phases]
    assert any("switching anyway" in ln.text for ln in core.logbook.tail(50))
    assert world.running() == ["beta"]
