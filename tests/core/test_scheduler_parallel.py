"""Models that do not conflict run side by side; a load stops only what it conflicts with."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import CONFLICTS, Fleet, ensured, model, states, wait_until

pytestmark = pytest.mark.anyio

SLOW = Script(load_s=30)  # loads until the test moves the clock on


async def test_the_conflict_rule_of_the_placed_profiles_is_the_one_the_tests_expect(fleet: Fleet) -> None:
    ids = ["alpha", "beta", "gamma", "delta", "solo", "far", "near"]
    seen = {frozenset((a, b)) for i, a in enumerate(ids) for b in ids[i + 1:] if fleet.conflict(a, b)}
    assert seen == CONFLICTS


async def test_two_models_that_do_not_conflict_load_at_the_same_time_and_both_end_ready(
    fleet: Fleet, fleet_core: Core
) -> None:
    fleet.script("alpha", SLOW)
    fleet.script("beta", SLOW)
    a = await fleet_core.ensure("alpha")
    b = await fleet_core.ensure("beta")
    # Both servers are loading at one moment: the second load did not wait for the first.
    await wait_until(lambda: a.phase == "loading" and b.phase == "loading")
    assert set(fleet.ours()) == {"alpha", "beta"}
    assert states(fleet_core) == {"alpha": "loading", "beta": "loading"}
    assert {j["id"] for j in fleet_core.status()["jobs"]} == {a.id, b.id}
    assert a.stops == [] and b.stops == []
    fleet.advance(30)
    with anyio.fail_after(1):
        await a.done.wait()
        await b.done.wait()
    assert a.result == "ready" and b.result == "ready", (a.to_dict(), b.to_dict())
    assert states(fleet_core) == {"alpha": "ready", "beta": "ready"}
    assert fleet_core.running_ids() == {"alpha", "beta"}
    assert fleet_core.status()["jobs"] == []


async def test_a_model_on_another_engine_loads_beside_one_with_the_same_gpu_index(
    fleet: Fleet, fleet_core: Core
) -> None:
    assert (await ensured(fleet_core, "alpha")).result == "ready"
    far = await ensured(fleet_core, "far")  # GPU 0 too, but of the remote engine
    assert far.result == "ready" and far.stops == [] and far.engine == "remote", far.to_dict()
    assert model(fleet_core, "far")["engine"] == "remote"
    assert model(fleet_core, "alpha")["engine"] == "local"
    assert states(fleet_core) == {"alpha": "ready", "far": "ready"}


async def test_a_conflicting_third_model_replaces_only_the_one_it_conflicts_with(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    before = fleet.ours()
    seen_beta: set[str] = set()
    fleet.script("gamma", Script(load_s=0.1))
    job = await fleet_core.ensure("gamma")  # GPU 0, like alpha; beta has GPU 1
    assert job.stops == ["alpha"], job.to_dict()
    with anyio.fail_after(2):
        while not job.done.is_set():  # beta and far serve all along
            seen_beta.add(model(fleet_core, "beta")["state"])
            seen_beta.add(model(fleet_core, "far")["state"])
            await anyio.sleep(0.005)
    assert job.result == "ready", job.to_dict()
    assert seen_beta == {"ready"}
    after = fleet.ours()
    assert set(after) == {"beta", "gamma", "far"}
    assert after["beta"].id == before["beta"].id and after["far"].id == before["far"].id  # untouched
    assert states(fleet_core) == {"beta": "ready", "gamma": "ready", "far": "ready"}


async def test_a_fixed_port_is_a_conflict_even_without_a_gpu(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    job = await ensured(fleet_core, "delta")  # no GPU, but alpha's port
    assert job.result == "ready" and job.stops == ["alpha"], job.to_dict()
    assert set(fleet.ours()) == {"beta", "delta"}


async def test_an_exclusive_model_replaces_every_model_of_its_engine_and_none_elsewhere(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    job = await ensured(fleet_core, "solo")
    assert job.result == "ready" and sorted(job.stops) == ["alpha", "beta"], job.to_dict()
    assert set(fleet.ours()) == {"solo", "far"}


async def test_ensure_of_a_ready_model_is_a_finished_job_that_touches_nothing(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    before = fleet.ours()
    again = await fleet_core.ensure("alpha")
    assert again.done.is_set() and again.result == "ready" and again.detail == "already loaded"
    assert again.stops == []
    assert fleet.ours() == before


async def test_list_models_says_what_runs_what_conflicts_and_what_a_switch_would_replace(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    entries = {e["id"]: e for e in fleet_core.list_models()}
    assert entries["alpha"]["running"] == "ready" and entries["gamma"]["running"] is None
    assert sorted(entries["gamma"]["conflicts_with"]) == ["alpha", "solo"]
    assert entries["gamma"]["would_replace"] == ["alpha"]
    assert sorted(entries["solo"]["would_replace"]) == ["alpha", "beta"]
    assert entries["far"]["would_replace"] == [] and entries["far"]["engine"] == "remote"
    assert entries["beta"]["would_replace"] == []  # itself: it runs already
    assert entries["delta"]["port"] == 18101 and entries["delta"]["gpus"] == "none"
    assert entries["solo"]["exclusive"] is True


async def test_status_lists_every_running_model_with_its_placement_and_container(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    status = fleet_core.status()
    by_id = {m["id"]: m for m in status["models"]}
    assert set(by_id) == {"alpha", "far"}
    ours = fleet.ours()
    for model_id, entry in by_id.items():
        assert entry["state"] == "ready" and entry["health"] == "ok", entry
        assert ours[model_id].id.startswith(entry["container"]["id"])
        assert entry["endpoint"] and entry["endpoint"].endswith(str(entry["port"]))
    assert by_id["alpha"]["gpus"] == "0" and by_id["alpha"]["exclusive"] is False
    assert status["primary"] == "far"  # the target of the most recent switch
    assert status["profile"]["id"] == "far" and status["state"] == "ready"  # old single-model fields
