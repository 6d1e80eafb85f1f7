"""Rollback puts back everything a failed load stopped; unload stops one model, unload_all every one."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.jobs import SwitchError
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import Fleet, ensured, states

pytestmark = pytest.mark.anyio

CORRUPT = Script.fails("llama_model_load: error loading model: invalid magic characters", code=1)


async def test_a_failed_load_that_stopped_two_models_restores_both(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    far = fleet.ours()["far"].id
    fleet.script("solo", CORRUPT)
    job = await ensured(fleet_core, "solo")  # exclusive: stops alpha and beta, then fails
    assert job.result == "failed" and job.failure is not None, job.to_dict()
    assert job.failure.reason == "model_corrupt"
    assert sorted(job.stops) == ["alpha", "beta"]
    assert job.restored is True, job.to_dict()
    assert states(fleet_core) == {"alpha": "ready", "beta": "ready", "far": "ready", "solo": "failed"}
    assert set(fleet.ours()) == {"alpha", "beta", "far"}
    assert fleet.ours()["far"].id == far  # on another engine: never stopped
    assert "solo" not in fleet.env_models()


async def test_without_rollback_the_stopped_models_stay_stopped(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    fleet.script("solo", CORRUPT)
    job = await ensured(fleet_core, "solo", rollback=False)
    assert job.result == "failed" and job.restored is None, job.to_dict()
    assert fleet.ours() == {}
    assert fleet.env_models() == set()


async def test_a_restore_that_fails_for_one_model_brings_back_the_other_and_says_so(
    fleet: Fleet, fleet_core: Core
) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    fleet.script("solo", CORRUPT)
    fleet.script("beta", Script.fails("ggml_backend_cuda_buffer_type_alloc_buffer: out of memory"))
    job = await ensured(fleet_core, "solo")
    assert job.result == "failed" and job.restored is False, job.to_dict()
    assert set(fleet.ours()) == {"alpha"}
    assert states(fleet_core)["alpha"] == "ready"


async def test_unload_stops_one_model_and_the_other_keeps_serving(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    beta = fleet.ours()["beta"]
    assert fleet.env_models() == {"alpha", "beta"}
    job = await fleet_core.unload("alpha")
    assert job.kind == "unload" and job.stops == ["alpha"]
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.failure is None, job.to_dict()
    assert fleet.ours() == {"beta": beta}  # the same container, never touched
    assert states(fleet_core).get("alpha", "stopped") == "stopped"
    assert states(fleet_core)["beta"] == "ready"
    assert fleet.env_models() == {"beta"}
    assert fleet_core.running_ids() == {"beta"}


async def test_unload_of_a_model_that_does_not_run_says_not_running(fleet: Fleet, fleet_core: Core) -> None:
    assert (await ensured(fleet_core, "beta")).result == "ready"
    with pytest.raises(SwitchError) as error:
        await fleet_core.unload("alpha")
    assert error.value.reason == "not_running"
    assert error.value.valid == ["beta"]
    with pytest.raises(SwitchError) as unknown:
        await fleet_core.unload("nope")
    assert unknown.value.reason in ("unknown_model", "not_running")


async def test_unload_all_stops_every_model_on_every_engine(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    job = await fleet_core.unload_all()
    with anyio.fail_after(2):
        await job.done.wait()
    assert job.failure is None and sorted(job.stops) == ["alpha", "beta", "far"], job.to_dict()
    assert fleet.containers() == []
    assert fleet_core.running_ids() == set()
    assert fleet.env_models() == set()
    assert (await fleet_core.stop_model()).done is not None  # the old name still answers


async def test_env_files_follow_what_runs(fleet: Fleet, fleet_core: Core) -> None:
    for model_id in ("alpha", "beta", "far"):
        assert (await ensured(fleet_core, model_id)).result == "ready"
    assert fleet.env_models() == {"alpha", "beta", "far"}
    assert (await ensured(fleet_core, "gamma")).result == "ready"
    assert fleet.env_models() == {"beta", "far", "gamma"}
    last = (fleet.root / "compose" / ".env").read_text(encoding="utf-8")
    assert 'LLM_PROFILE="gamma"' in last  # `.env`: the last one started, for compose by hand


async def test_a_forced_reload_of_a_loading_model_keeps_its_env_file(fleet: Fleet, fleet_core: Core) -> None:
    fleet.script("far", Script(load_s=30))
    first = await fleet_core.ensure("far")
    with anyio.fail_after(1):
        while first.phase != "loading":
            await anyio.sleep(0.002)
    fleet.script("far", Script())  # the second container loads at once
    again = await ensured(fleet_core, "far", force=True)  # restarts far: its old container goes
    assert first.result == "cancelled" and again.result == "ready", again.to_dict()
    assert set(fleet.ours()) == {"far"}
    assert fleet.env_models() == {"far"}
