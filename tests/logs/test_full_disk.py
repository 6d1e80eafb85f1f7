"""A full state dir (a real tmpfs, filled) is a reported state, not silent loss or a broken switch.

Before: the log follower died at the first ENOSPC (4,006 of 100,000 lines kept, even
in memory), and the next switch removed the old container, failed with
`internal_error: [Errno 28]`, skipped the rollback, and status still showed the
old container healthy.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest

from llm_mcp.clients.render import status_text
from llm_mcp.config.models_conf import load_config
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_PROFILES, ROOT, Setup, wait_until
from tests.fulldisk import fill, full_tmpfs
from tests.logs.conftest import extra

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

LINES = 100_000
PROFILES = FAKE_PROFILES + extra("flood", f"--fake-lines {LINES} --fake-line-rate 0") + \
    extra("broken", "--fake-scenario crash-load --fake-load-seconds 0.5")
NUMBERED = re.compile(r"^fake line (\d+)$")


@pytest.fixture
def full_state(setup: Setup) -> Iterator[Setup]:
    """The setup with its state dir on a full 1 MiB tmpfs."""
    setup.write(PROFILES)
    with full_tmpfs(setup.root / "full") as mount:
        setup.state_dir = mount / "state"
        yield setup


@asynccontextmanager
async def core_with_room_for(setup: Setup, lines: int) -> AsyncIterator[Core]:
    """A core whose ring can hold every line of the flood, to count them all."""
    config = setup.config_path
    core = Core(load_config=lambda: load_config(config), runtime=DockerRuntime(setup.instance),
                state_dir=setup.state_dir, log_capacity=lines + 1000)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def switch(core: Core, profile_id: str) -> str | None:
    with anyio.fail_after(60):
        job = await core.ensure(profile_id)
        await job.done.wait()
    return job.result


async def test_with_the_state_dir_full_every_line_stays_in_memory_and_status_says_so(
    full_state: Setup,
) -> None:
    async with core_with_room_for(full_state, LINES) as core:
        assert await switch(core, "flood") == "ready"

        def numbers() -> list[int]:
            return [int(m.group(1)) for ln in core.logbook.tail(LINES + 1000, run="current")
                    if (m := NUMBERED.match(ln.text))]

        with anyio.fail_after(120):
            while not (got := numbers()) or got[-1] != LINES:
                await anyio.sleep(0.2)
        assert got == list(range(1, LINES + 1))
        status = core.status()
        assert status["state"] == "ready"
        state_dir = status["state_dir"]
        assert state_dir["writable"] is False
        assert "No space left on device" in state_dir["error"]
        assert state_dir["path"] == str(full_state.state_dir)
        notes = [ln.text for ln in core.logbook.tail(LINES + 1000) if ln.kind == "note"]
        assert sum("keeping the log in memory only" in text for text in notes) == 1
        assert "state dir:  NOT WRITABLE" in status_text(status)


async def test_with_the_state_dir_full_a_switch_works_and_a_failed_one_rolls_back(
    full_state: Setup,
) -> None:
    async with core_with_room_for(full_state, 1000) as core:
        assert await switch(core, "fake-a") == "ready"
        assert await switch(core, "fake-b") == "ready"  # load history and run files: not writable
        status = core.status()
        assert status["state"] == "ready" and status["profile"]["id"] == "fake-b"
        assert status["state_dir"]["writable"] is False
        with anyio.fail_after(60):
            job = await core.ensure("broken")
            await job.done.wait()
        assert job.result == "failed", job.to_dict()
        assert job.failure is not None and job.failure.reason != "internal_error"
        assert job.restored is True
        await wait_until(lambda: core.status()["health"] == "ok", 10)
        status = core.status()
        assert status["state"] == "ready" and status["profile"]["id"] == "fake-b"
        assert len(full_state.containers()) == 1


async def test_a_compose_env_file_that_cannot_be_written_is_a_warning_not_a_failed_switch(
    setup: Setup,
) -> None:
    with full_tmpfs(setup.root / "full", filled=False) as mount:
        shutil.copy(ROOT / "compose" / "compose.cpu.yaml", mount / "compose.yaml")
        setup.write(PROFILES.replace("[fake-a]", f"[fake-a]\ncompose_file = {mount / 'compose.yaml'}"))
        fill(mount)
        async with core_with_room_for(setup, 1000) as core:
            assert await switch(core, "fake-a") == "ready"
            notes = [ln.text for ln in core.logbook.tail(1000) if ln.kind == "note"]
        assert any(f"cannot write {mount / '.env'}" in text for text in notes), notes
