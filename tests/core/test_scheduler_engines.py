"""Several engines: what runs at start is adopted; a lost engine never blocks the other one."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from tests.core.conftest import Fleet, ensured, model, states, wait_until

pytestmark = pytest.mark.anyio


async def healthy(fleet: Fleet, *model_ids: str) -> None:
    for model_id in model_ids:
        probe = fleet.probe(fleet.url(model_id))
        with anyio.fail_after(1):
            while (await probe.health()).status != "ok":
                await anyio.sleep(0.002)


async def test_ready_containers_of_two_models_found_at_start_are_both_adopted_without_a_job(
    fleet: Fleet,
) -> None:
    left = {m: fleet.start_by_hand(m) for m in ("alpha", "beta", "far")}  # two on one engine
    await healthy(fleet, "alpha", "beta", "far")
    async with fleet.core() as core:
        status = core.status()
        assert states(core) == {"alpha": "ready", "beta": "ready", "far": "ready"}, status
        assert status["jobs"] == []
        for model_id, info in left.items():
            entry = model(core, model_id)
            assert entry["container"]["id"] == info.short_id
            assert entry["container"]["started_at"] == info.started_at  # not reloaded
            assert entry["stale_config"] is False
        again = await core.ensure("alpha")
        assert again.done.is_set() and again.detail == "already loaded"
        near = await ensured(core, "near")  # exclusive on remote: stops the adopted far, only it
        assert near.result == "ready" and near.stops == ["far"], near.to_dict()
    assert {c.id for c in fleet.containers()} == {left["alpha"].id, left["beta"].id} | {
        c.id for c in fleet.remote.containers()}
    assert [c.profile for c in fleet.remote.containers()] == ["near"]


async def test_leftovers_of_a_conflicting_pair_found_at_start_are_not_both_kept(fleet: Fleet) -> None:
    # Written by hand (or by an older models.conf): two models that may not run together.
    fleet.start_by_hand("alpha")
    fleet.start_by_hand("gamma")
    fleet.engine.violations.clear()  # the test made that pair, not the core
    await healthy(fleet, "alpha")
    async with fleet.core() as core:
        await wait_until(lambda: len(fleet.ours()) == 1 and core.status()["jobs"] == [])
        kept = set(fleet.ours())
        assert kept in ({"alpha"}, {"gamma"})
        assert core.running_ids() == kept


async def test_losing_one_engine_marks_its_models_unreachable_and_the_other_engine_serves_on(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    before = model(fleet_core, "far")["container"]
    t0 = fleet.engine.clock()
    fleet.remote.stop_engine(live_restore=True)
    await wait_until(lambda: model(fleet_core, "far")["state"] == "unreachable", timeout=3)
    assert fleet.engine.clock() - t0 < 2.0
    far = model(fleet_core, "far")
    assert far["reason_code"] == "docker_unavailable" and far["hint"], far
    assert far["container"]["id"] == before["id"]  # the last one known, not forgotten
    assert model(fleet_core, "alpha")["state"] == "ready"
    engines = {e["name"]: e for e in fleet_core.status()["engines"]}
    assert engines["remote"]["available"] is False and engines["local"]["available"] is True
    beta = await ensured(fleet_core, "beta")  # the local engine is not blocked by the lost one
    assert beta.result == "ready", beta.to_dict()
    assert fleet_core.status()["docker"]["available"] is True  # `docker`: the local engine


async def test_an_engine_back_with_live_restore_is_adopted_again_without_a_reload(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    before = model(fleet_core, "far")["container"]
    fleet.remote.stop_engine(live_restore=True)
    await wait_until(lambda: model(fleet_core, "far")["state"] == "unreachable", timeout=3)
    fleet.remote.start_engine()
    await wait_until(lambda: model(fleet_core, "far")["state"] == "ready", timeout=3)
    far = model(fleet_core, "far")
    assert far["container"]["id"] == before["id"]
    assert far["container"]["started_at"] == before["started_at"]  # no reload
    assert far["reason"] is None or "docker" not in str(far["reason_code"])
    assert fleet_core.status()["jobs"] == []
    assert len(fleet.remote.containers()) == 1
    assert model(fleet_core, "alpha")["state"] == "ready"


async def test_an_engine_back_without_live_restore_reports_its_model_stopped_with_a_reason(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("far", "alpha"):  # far is not the primary: its own entry must say it
        assert (await ensured(fleet_core, model_id)).result == "ready"
    fleet.remote.stop_engine(live_restore=False)  # its containers stop with it
    await wait_until(lambda: model(fleet_core, "far")["state"] == "unreachable", timeout=3)
    fleet.remote.start_engine()
    await wait_until(lambda: model(fleet_core, "far")["state"] != "unreachable", timeout=3)
    far = model(fleet_core, "far")  # still listed: a stop nobody asked for is news
    assert far["state"] == "stopped" and far["reason_code"] == "container_gone", far
    assert far["reason"] and far["container"] is None
    await wait_until(lambda: fleet.remote.containers() == [])  # the dead leftover is cleared
    assert model(fleet_core, "alpha")["state"] == "ready"
    assert fleet_core.running_ids() == {"alpha"}


async def test_a_load_on_a_lost_engine_fails_at_once_and_touches_nothing_elsewhere(
    fleet: Fleet, fleet_core: Core
) -> None:
    assert (await ensured(fleet_core, "alpha")).result == "ready"
    fleet.remote.stop_engine()
    job = await ensured(fleet_core, "far")
    assert job.result == "failed" and job.failure is not None, job.to_dict()
    assert job.failure.reason == "docker_unavailable"
    assert set(fleet.ours()) == {"alpha"}
    assert model(fleet_core, "alpha")["state"] == "ready"
