# ruff: noqa: F811 - the second-engine fixtures are imported from tests/engines.py
"""Docker going away never ends the core: it says so, reconnects by itself and adopts again.

The engine here is a real second dockerd the tests stop and start (tests/engines.py),
with --live-restore, as a restarted system dockerd: the container keeps running
while the engine is down, and the core must find it again without reloading it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, wait_until
from tests.engines import Engine, EngineSetup, _module_engine, engine, engine_setup  # noqa: F401

# docker-py leaks the socket of a unix connect that fails (docker/transport/unixconn.py does
# not close it), which is what every call does while the engine is down; the GC closes them.
pytestmark = [pytest.mark.anyio, pytest.mark.docker,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]



@pytest.fixture(autouse=True)
def _collect_leaked_sockets() -> Any:
    """Close those leaked sockets here, under this module's filter, not in the next test."""
    yield
    gc.collect()


SLOW_LOAD = f"""
[slow]
name = Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 8
"""


def engine_core(s: EngineSetup) -> Core:
    config = s.config_path
    return Core(load_config=lambda: load_config(config),
                runtime=DockerRuntime(s.instance, base_url=s.engine.host), state_dir=s.state_dir)


@asynccontextmanager
async def running(core: Core) -> AsyncIterator[Core]:
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


def docker_down(status: dict[str, Any]) -> bool:
    docker = status.get("docker") or {}
    return docker.get("available") is False and status.get("reason_code") == "docker_unavailable"


def assert_says_docker_is_down(status: dict[str, Any]) -> None:
    assert docker_down(status), status
    assert "Docker" in status["reason"] and status["hint"], status
    for raw in ("Error", "Connection", "Traceback", "urllib3", "('"):
        assert raw not in status["reason"], status["reason"]


async def ready_on(core: Core, profile: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        job = await core.switch(profile)
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    return core.status()


async def test_a_ready_model_survives_its_engine_stopping_and_is_adopted_again_without_reload(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    async with running(engine_core(engine_setup)) as core:
        before = (await ready_on(core, "fake-a"))["container"]
        await anyio.to_thread.run_sync(engine.stop)
        stopped_at = time.monotonic()
        await wait_until(lambda: docker_down(core.status()), 10)
        assert time.monotonic() - stopped_at < 5
        status = core.status()
        assert_says_docker_is_down(status)
        assert status["container"]["id"] == before["id"]  # the last one known, not forgotten
        await anyio.to_thread.run_sync(engine.start)
        await wait_until(lambda: core.status()["docker"]["available"], 15)
        await wait_until(lambda: core.status()["reason_code"] is None, 15)
        status = core.status()
        assert status["state"] == "ready" and status["reason"] is None, status["reason"]
        await wait_until(lambda: core.status()["health"] == "ok", 10)
        assert status["container"]["id"] == before["id"]
        assert status["container"]["started_at"] == before["started_at"]  # no reload
        assert status["job"] is None
        assert engine_setup.containers() == [engine_setup.containers()[0]]


async def test_a_load_in_flight_when_the_engine_stops_fails_with_docker_unavailable(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    engine_setup.write(FAKE_PROFILES + SLOW_LOAD)
    async with running(engine_core(engine_setup)) as core:
        job = await core.switch("slow")
        await wait_until(lambda: core.status()["state"] == "loading", 20)
        loading = core.status()["container"]["id"]
        await anyio.to_thread.run_sync(engine.stop)
        with anyio.fail_after(10):
            await job.done.wait()
        assert job.result == "failed"
        assert job.failure is not None and job.failure.reason == "docker_unavailable", job.to_dict()
        assert "None" not in job.failure.message and "start Docker" in job.failure.hint
        assert_says_docker_is_down(core.status())
        assert core.current_job is None
        # Back: the container that was loading is adopted and finishes its load.
        await anyio.to_thread.run_sync(engine.start)
        await wait_until(lambda: core.status()["state"] == "ready", 25)
        status = core.status()
        assert status["container"]["id"] == loading
        assert status["profile"]["id"] == "slow"
        assert len(engine_setup.containers()) == 1


async def test_a_core_started_while_the_engine_is_down_adopts_the_container_when_it_returns(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    async with running(engine_core(engine_setup)) as first:
        before = (await ready_on(first, "fake-a"))["container"]
    await anyio.to_thread.run_sync(engine.stop)
    async with running(engine_core(engine_setup)) as core:
        status = core.status()
        assert_says_docker_is_down(status)
        assert status["state"] == "stopped"
        await anyio.to_thread.run_sync(engine.start)
        await wait_until(lambda: core.status()["state"] == "ready", 15)
        status = core.status()
        assert status["container"]["id"] == before["id"]
        assert status["container"]["started_at"] == before["started_at"]
        assert status["docker"]["available"] is True and status["reason_code"] is None


async def test_a_switch_asked_while_the_engine_is_down_fails_at_once_with_docker_unavailable(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    await anyio.to_thread.run_sync(engine.stop)
    async with running(engine_core(engine_setup)) as core:
        with anyio.fail_after(10):
            job = await core.switch("fake-a")
            await job.done.wait()
        assert job.result == "failed"
        assert job.failure is not None and job.failure.reason == "docker_unavailable"
        assert "start Docker" in job.failure.hint
        assert core.current_job is None
        assert_says_docker_is_down(core.status())


async def test_the_daemon_process_outlives_its_engine_and_answers_status_meanwhile(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    from tests.daemons import Daemons, Raw, socket_of

    daemons = Daemons(engine_setup)
    try:
        proc = daemons.start()
        raw = await Raw.open(socket_of(engine_setup))
        try:
            reply = await raw.call("switch", {"model": "fake-a", "wait": True, "timeout": 30})
            assert reply["result"]["result"] == "ready", reply
            container = (await raw.call("status", {"gpu": False}))["result"]["container"]["id"]
            await anyio.to_thread.run_sync(engine.stop)
            with anyio.fail_after(10):
                while not docker_down((await raw.call("status", {"gpu": False}))["result"]):
                    assert proc.poll() is None, daemons.stderr(proc)
                    await anyio.sleep(0.1)
            # Down for a while: the daemon stays, every status call answers at once.
            for _ in range(10):
                started = time.monotonic()
                status = (await raw.call("status", {"gpu": False}))["result"]
                assert time.monotonic() - started < 1.0
                assert_says_docker_is_down(status)
                assert proc.poll() is None
                await anyio.sleep(0.1)
            await anyio.to_thread.run_sync(engine.start)
            with anyio.fail_after(20):
                while True:
                    status = (await raw.call("status", {"gpu": False}))["result"]
                    if status["state"] == "ready" and status["docker"]["available"]:
                        break
                    await anyio.sleep(0.1)
            assert status["container"]["id"] == container
            assert proc.poll() is None
            assert "Traceback" not in daemons.stderr(proc)
        finally:
            await raw.aclose()
    finally:
        if not engine.running:
            engine.start()
        daemons.cleanup()


async def test_a_daemon_started_while_the_engine_is_down_adopts_the_container_once_it_answers(
    engine_setup: EngineSetup, engine: Engine
) -> None:
    from tests.daemons import Daemons, Raw, socket_of

    daemons = Daemons(engine_setup)
    try:
        daemons.start()
        raw = await Raw.open(socket_of(engine_setup))
        reply = await raw.call("switch", {"model": "fake-a", "wait": True, "timeout": 30})
        assert reply["result"]["result"] == "ready", reply
        container = (await raw.call("status", {"gpu": False}))["result"]["container"]["id"]
        await raw.aclose()
        await anyio.to_thread.run_sync(daemons.cleanup)  # SIGTERM: the container stays
        await anyio.to_thread.run_sync(engine.stop)
        proc = daemons.start()
        raw = await Raw.open(socket_of(engine_setup))
        try:
            status = (await raw.call("status", {"gpu": False}))["result"]
            assert_says_docker_is_down(status)
            await anyio.to_thread.run_sync(engine.start)
            with anyio.fail_after(20):
                while True:
                    status = (await raw.call("status", {"gpu": False}))["result"]
                    if status["state"] == "ready":
                        break
                    await anyio.sleep(0.1)
            assert status["container"]["id"] == container
            assert status["docker"]["available"] is True and status["reason_code"] is None
            assert proc.poll() is None
        finally:
            await raw.aclose()
    finally:
        if not engine.running:
            engine.start()
        daemons.cleanup()
