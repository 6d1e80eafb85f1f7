"""What status() and the event bus say during and after a switch."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.events import EventBus
from llm_mcp.runtime.log_signals import PHASES
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, Setup, make_core, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


async def test_state_changes_and_job_phases_are_events_with_timestamps(setup: Setup) -> None:
    bus = EventBus()
    events = bus.subscribe(["state", "job", "log"])
    core = make_core(setup, bus)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        with anyio.fail_after(20):
            job = await core.switch("fake-b")
            await job.done.wait()
        tg.cancel_scope.cancel()
    seen = list(events.queue)
    states = [e["data"]["state"] for e in seen if e["topic"] == "state" and "reason" in e["data"]]
    assert states[-3:] == ["starting", "loading", "ready"]
    job_events = [e["data"] for e in seen if e["topic"] == "job" and e["data"]["id"] == job.id]
    assert job_events[-1]["result"] == "ready" and job_events[-1]["done"] is True
    phases = [p["phase"] for p in job_events[-1]["phases"]]
    assert phases[0] == "queued"
    assert phases.index("starting") < phases.index("loading") < phases.index("ready")
    # At least one phase read from what the server printed (sampled at each health poll).
    assert set(phases) & {phase for _, phase in PHASES}, phases
    assert all(isinstance(p["time"], float) and p["at"] >= 0 for p in job_events[-1]["phases"])
    times = [e["time"] for e in seen]
    assert times == sorted(times)
    assert any(e["topic"] == "log" and "model loaded" in e["data"]["text"] for e in seen)


async def test_a_second_load_of_a_profile_shows_an_estimate_and_progress(setup: Setup) -> None:
    setup.write(FAKE_PROFILES.replace("--fake-load-seconds 0.5", "--fake-load-seconds 1.5"))
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        with anyio.fail_after(30):
            first = await core.switch("fake-b")
            assert first.estimate is None
            await first.done.wait()
            assert first.load_seconds is not None and first.load_seconds >= 1.5
            await (await core.switch("fake-a")).done.wait()
            second = await core.switch("fake-b")
            assert second.estimate == first.load_seconds
            await wait_until(lambda: second.phase not in ("queued", "stopping_previous", "starting"), 10)
            job = core.status()["job"]
            assert job["id"] == second.id
            assert job["estimate"] == first.load_seconds
            assert 0 <= job["progress"] < 1
            assert job["elapsed"] > 0
            await second.done.wait()
        assert second.to_dict()["progress"] == 1.0
        models = {m["id"]: m for m in core.list_models()}
        assert models["fake-b"]["current"] is True
        assert models["fake-b"]["estimated_load_seconds"] is not None
        assert models["fake-a"]["model_present"] is True
        tg.cancel_scope.cancel()


async def test_status_reports_measured_speed_against_the_profile_and_offloaded_layers(
    setup: Setup,
) -> None:
    setup.write(f"""
[gpu-part]
name = Partly on GPU
model = tiny-a.gguf
image = {FAKE_IMAGE}
n_gpu_layers = 20
speed = 100
flags = --fake-tps 50
""")
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        with anyio.fail_after(20):
            job = await core.switch("gpu-part")
            await job.done.wait()
            await wait_until(lambda: core.status()["speed"]["measured_tps"] is not None, 10)
        status = core.status()
        assert status["offload"] == {"layers": 20, "total": 49, "expected": 20, "matches": True}
        speed = status["speed"]
        assert speed["expected_tps"] == 100
        assert speed["measured_tps"] == pytest.approx(50, rel=0.05)
        assert speed["ratio"] == pytest.approx(0.5, rel=0.05)
        assert speed["as_expected"] is False
        assert status["container"]["uptime"] >= 0
        assert status["endpoint"] == f"http://127.0.0.1:{setup.port}"
        tg.cancel_scope.cancel()
