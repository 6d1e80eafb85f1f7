"""Docker going away mid-switch: a clear reason, never a stuck state.

Stopping the real dockerd would break every other test on the machine, so the
outage is injected: a DockerRuntime whose create call fails the way the SDK does
when the engine's socket is gone (a stand-in for that one call only).
"""

from __future__ import annotations

import anyio
import pytest
import requests

from llm_mcp.config import load_config
from llm_mcp.docker_runtime import DockerRuntime
from llm_mcp.lifecycle import Core
from tests.conftest import Setup

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


class EngineGoneOnCreate(DockerRuntime):
    def create_and_start(self, spec):  # type: ignore[no-untyped-def]
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")


async def test_docker_vanishing_during_a_switch_fails_with_docker_unavailable(setup: Setup) -> None:
    core = Core(load_config=lambda: load_config(setup.config_path),
                runtime=EngineGoneOnCreate(setup.instance), state_dir=setup.state_dir)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        with anyio.fail_after(20):
            job = await core.switch("fake-a")
            await job.done.wait()
        assert job.result == "failed"
        assert job.failure is not None and job.failure.reason == "docker_unavailable"
        assert "start Docker" in job.failure.hint
        assert core.status()["state"] == "failed"
        assert core.current_job is None
        tg.cancel_scope.cancel()
