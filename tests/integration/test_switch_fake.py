from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from tests.conftest import Setup

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


async def test_switch_from_stopped_reaches_ready_with_one_container(core: Core, setup: Setup) -> None:
    with anyio.fail_after(30):
        job = await core.switch("fake-a")
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert core.status()["state"] == "ready"
    assert len(setup.containers()) == 1
