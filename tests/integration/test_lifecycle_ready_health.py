"""After ready: a paused or hung server is reported, and a removal mid-load is called a removal."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, Setup, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture
async def watched(setup: Setup) -> AsyncIterator[Core]:
    """A core that checks a ready server's health every 0.3 s (the daemon: every 3 s)."""
    config = setup.config_path
    core = Core(load_config=lambda: load_config(config), runtime=DockerRuntime(setup.instance),
                state_dir=setup.state_dir, ready_health_interval=0.3)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def ready(core: Core, profile: str = "fake-a") -> str:
    with anyio.fail_after(30):
        job = await core.switch(profile)
        await job.done.wait()
    assert job.result == "ready"
    return str(core.status()["container"]["id"])


async def test_a_paused_container_is_ready_but_unresponsive_until_it_is_unpaused(watched: Core) -> None:
    container = await ready(watched)
    subprocess.run(["docker", "pause", container], check=True, capture_output=True)
    try:
        await wait_until(lambda: watched.status()["health"] == "unresponsive", 10)
        status = watched.status()
        assert status["state"] == "ready"  # the model is still loaded: health, not state
        detail = status["health_detail"]
        assert "paused" in detail["message"] and "docker unpause" in detail["hint"], detail
    finally:
        subprocess.run(["docker", "unpause", container], check=True, capture_output=True)
    await wait_until(lambda: watched.status()["health"] == "ok", 10)
    assert watched.status()["health_detail"]["message"] is None


async def test_a_hung_server_is_reported_unresponsive_and_recovers_when_it_continues(
    watched: Core,
) -> None:
    container = await ready(watched)
    pids = DockerRuntime("unused").container_pids(container)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: watched.status()["health"] == "unresponsive", 10)
        status = watched.status()
        assert status["state"] == "ready"
        assert "does not answer /health" in status["health_detail"]["message"]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    await wait_until(lambda: watched.status()["health"] == "ok", 10)


async def test_a_container_removed_while_loading_is_reported_as_removed_not_as_a_crash(
    setup: Setup, watched: Core
) -> None:
    setup.write(FAKE_PROFILES + f"\n[slow]\nname = Slow\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                "flags = --fake-load-seconds 20\n")
    job = await watched.switch("slow")
    await wait_until(lambda: watched.status()["state"] == "loading", 20)
    container = watched.status()["container"]["id"]
    subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
    with anyio.fail_after(10):
        await job.done.wait()
    assert job.failure is not None
    assert job.failure.reason == "container_removed", job.failure
    assert "removed outside llm-mcp" in job.failure.message
    assert "signal" not in job.failure.message
