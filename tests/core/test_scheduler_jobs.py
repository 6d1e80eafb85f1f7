"""Join, refuse and force apply per conflict set; a busy model drains before it stops."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.jobs import Job, SwitchRefused
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import Fleet, ensured, model, states, wait_until

pytestmark = pytest.mark.anyio

SLOW = Script(load_s=30)


async def loading(core: Core, model_id: str) -> Job:
    job = await core.ensure(model_id)
    await wait_until(lambda: job.phase == "loading")
    return job


async def test_a_second_request_for_a_loading_model_joins_its_job(fleet: Fleet, fleet_core: Core) -> None:
    fleet.script("gamma", SLOW)
    first = await loading(fleet_core, "gamma")
    assert await fleet_core.ensure("gamma") is first
    assert await fleet_core.switch("gamma") is first  # the old name, the same rule
    fleet.advance(30)
    with anyio.fail_after(1):
        await first.done.wait()
    assert first.result == "ready", first.to_dict()
    assert [c.profile for c in fleet.containers()] == ["gamma"]


async def test_a_conflicting_request_while_a_load_runs_is_refused_naming_that_job(
    fleet: Fleet, fleet_core: Core
) -> None:
    assert (await ensured(fleet_core, "alpha")).result == "ready"
    fleet.script("gamma", SLOW)
    gamma = await loading(fleet_core, "gamma")  # it stopped alpha
    for other in ("alpha", "solo"):  # alpha: gamma's conflict; solo: conflicts with everything local
        with pytest.raises(SwitchRefused) as refused:
            await fleet_core.ensure(other)
        assert refused.value.job is gamma
        assert gamma.id in str(refused.value) and "force" in str(refused.value)
    beta = await ensured(fleet_core, "beta")  # no conflict with gamma: not refused, loads meanwhile
    assert beta.result == "ready" and not gamma.done.is_set()
    fleet.advance(30)
    with anyio.fail_after(1):
        await gamma.done.wait()
    assert gamma.result == "ready"
    assert states(fleet_core) == {"beta": "ready", "gamma": "ready"}


async def test_unload_of_a_model_a_load_in_flight_would_stop_is_refused(
    fleet: Fleet, fleet_core: Core
) -> None:
    fleet.script("alpha", SLOW)
    alpha = await loading(fleet_core, "alpha")
    with pytest.raises(SwitchRefused) as refused:
        await fleet_core.unload("alpha")
    assert refused.value.job is alpha
    with pytest.raises(SwitchRefused):
        await fleet_core.unload_all()
    fleet.advance(30)
    with anyio.fail_after(1):
        await alpha.done.wait()
    assert alpha.result == "ready"


async def test_force_cancels_the_conflicting_load_and_the_forced_model_wins(
    fleet: Fleet, fleet_core: Core
) -> None:
    assert (await ensured(fleet_core, "beta")).result == "ready"
    beta = fleet.ours()["beta"].id
    fleet.script("gamma", SLOW)
    gamma = await loading(fleet_core, "gamma")
    alpha = await fleet_core.ensure("alpha", force=True)
    with anyio.fail_after(1):
        await alpha.done.wait()
    assert gamma.done.is_set() and gamma.result == "cancelled", gamma.to_dict()
    assert gamma.replaced_by == alpha.id
    assert alpha.result == "ready", alpha.to_dict()
    assert set(fleet.ours()) == {"alpha", "beta"}  # the half-loaded gamma is gone
    assert fleet.ours()["beta"].id == beta  # not part of the quarrel: untouched
    assert states(fleet_core) == {"alpha": "ready", "beta": "ready"}
    assert fleet_core.status()["jobs"] == []


async def test_a_busy_model_drains_before_it_is_stopped_and_its_neighbour_serves_on(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    fleet.engine.busy(fleet.ours()["alpha"].id, seconds=1.5)  # drain_timeout is 2 s
    job = await fleet_core.ensure("gamma")
    await wait_until(lambda: job.phase == "draining")
    await anyio.sleep(0.1)  # several looks at /slots
    assert job.phase == "draining"
    assert set(fleet.ours()) == {"alpha", "beta"}  # alpha still serves while it drains
    assert model(fleet_core, "beta")["state"] == "ready"
    fleet.advance(1.5)  # the generation ends
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert set(fleet.ours()) == {"beta", "gamma"}


async def test_force_skips_the_drain_of_a_busy_model(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    fleet.engine.busy(fleet.ours()["alpha"].id, seconds=30)
    fleet.engine.busy(fleet.ours()["beta"].id, seconds=30)  # busy, but not in the way
    job = await ensured(fleet_core, "gamma", force=True)
    assert job.result == "ready", job.to_dict()
    assert "draining" not in [p["phase"] for p in job.phases]
    assert set(fleet.ours()) == {"beta", "gamma"}


async def test_a_model_that_is_not_in_the_way_is_not_drained(fleet: Fleet, fleet_core: Core) -> None:
    assert (await ensured(fleet_core, "beta")).result == "ready"
    fleet.engine.busy(fleet.ours()["beta"].id, seconds=30)
    job = await ensured(fleet_core, "alpha")  # beta keeps generating; alpha needs nothing of it
    assert job.result == "ready" and "draining" not in [p["phase"] for p in job.phases]
