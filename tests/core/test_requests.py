"""The endpoint's requests as the scheduler sees them: drain, cut, ttl and preload (stand-in engine)."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import PROFILES, World, ready, wait_until

pytestmark = pytest.mark.anyio


async def test_a_switch_waits_for_the_endpoints_requests_before_stopping_the_model(
    world: World, core: Core
) -> None:
    await ready(core, "alpha")
    with core.requests.serving("alpha") as ticket:
        job = await core.switch("beta")
        await wait_until(lambda: job.phase == "draining")
        await anyio.sleep(0.05)
        assert world.running() == ["alpha"] and not ticket.cut.is_set()  # still serving it
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready" and world.running() == ["beta"], job.to_dict()


async def test_past_the_drain_timeout_the_request_is_cut_with_a_reason(world: World, core: Core) -> None:
    world.write(drain_timeout=0.1)
    await ready(core, "alpha")
    with core.requests.serving("alpha") as ticket:
        job = await core.switch("beta")
        with anyio.fail_after(1):
            await ticket.cut.wait()
        assert "Alpha was stopped to load Beta" in ticket.cut_reason and "drain timeout" in ticket.cut_reason
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready"


async def test_a_forced_switch_cuts_at_once_and_says_so(world: World, core: Core) -> None:
    await ready(core, "alpha")
    with core.requests.serving("alpha") as ticket:
        job = await core.switch("beta", force=True)
        with anyio.fail_after(0.5):
            await ticket.cut.wait()
        assert "forced" in ticket.cut_reason
    with anyio.fail_after(1):
        await job.done.wait()


async def test_ttl_unloads_an_idle_model_and_a_request_in_flight_postpones_it(
    world: World, core: Core
) -> None:
    world.write(PROFILES.replace("model = alpha.gguf", "model = alpha.gguf\nttl = 60"))
    await ready(core, "alpha")
    entry = next(m for m in core.status()["models"] if m["id"] == "alpha")
    assert entry["ttl"]["seconds"] == 60 and 59 <= entry["ttl"]["remaining"] <= 60
    with core.requests.serving("alpha"):
        world.engine.advance(120)
        await anyio.sleep(0.12)  # several looks of the expiry loop (every 0.05 s here)
        assert world.running() == ["alpha"]  # busy: never unloaded under a request
    world.engine.advance(30)
    await anyio.sleep(0.12)
    assert world.running() == ["alpha"]  # 30 s idle of 60
    world.engine.advance(31)
    await wait_until(lambda: world.running() == [])
    gone = next(m for m in core.status()["models"] if m["id"] == "alpha")
    assert gone["state"] == "stopped" and gone["reason_code"] == "ttl_expired", gone
    assert "idle for 60 s" in gone["reason"]


async def test_preload_ensures_the_model_when_the_core_starts(world: World) -> None:
    world.write(PROFILES.replace("model = beta.gguf", "model = beta.gguf\npreload = true"))
    async with world.core() as core:
        await wait_until(lambda: world.running() == ["beta"])
        await wait_until(lambda: core.status()["state"] == "ready")
        assert core.status()["models"][0]["preload"] is True


async def test_a_busy_model_keeps_a_turn_as_long_as_its_load_took_and_an_idle_one_none(
    world: World, core: Core
) -> None:
    world.script("alpha", Script(load_s=10))
    job = await core.switch("alpha")
    await wait_until(lambda: job.phase == "loading")
    world.engine.advance(10)  # the load takes 10 s on the stand-in's clock
    with anyio.fail_after(1):
        await job.done.wait()
    assert core.turn_left("beta") == 0  # idle: a request for beta may replace it at once
    assert core.turn_left("alpha") == 0 and core.turn_left("no-such-model") == 0
    with core.requests.waiting("alpha"):  # queued requests count as busy too
        assert 9.9 <= core.turn_left("beta") <= 10.2  # (the stand-in's clock also runs in real time)
    with core.requests.serving("alpha"):
        assert 9.9 <= core.turn_left("beta") <= 10.2
        world.engine.advance(4)
        assert 5.9 <= core.turn_left("beta") <= 6.2
        world.engine.advance(6.5)
        assert core.turn_left("beta") == 0  # its turn is over: beta's load may drain and stop it
