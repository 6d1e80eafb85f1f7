"""What the pre-flight does not know never refuses a switch: it proceeds and the load says why.

Real Docker and the fake llama-server image. The memory views here are stand-ins for the
figures only (one that hangs, one that raises); the model files are real files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core import scheduler
from llm_mcp.core.memory_view import LiveMemoryView
from llm_mcp.core.preflight import MemorySnapshot
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, Setup

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

PROFILES = f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}

[not-gguf]
name = Not GGUF
model = not-gguf.gguf
image = {FAKE_IMAGE}
"""


class HangingView:
    """A memory view whose figures never come (a wedged driver or engine)."""

    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class BrokenView:
    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        raise RuntimeError("the memory view blew up")


@asynccontextmanager
async def core_with(s: Setup, view: object) -> AsyncIterator[Core]:
    config = s.config_path
    core = Core(load_config=lambda: load_config(config), runtime=DockerRuntime(s.instance),
                state_dir=s.state_dir, memory_view=view)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def test_an_unreadable_model_file_is_no_refusal_the_load_fails_with_its_own_reason(
    setup: Setup,
) -> None:
    setup.write(PROFILES)
    view = LiveMemoryView(gpu_sample=None, container_pids=DockerRuntime(setup.instance).container_pids)
    async with core_with(setup, view) as core:
        with anyio.fail_after(30):
            await core.update_fits(wait=10)
            fit = {m["id"]: m["fit"] for m in core.list_models()}["not-gguf"]
            assert fit["verdict"] == "unknown" and fit["error"].startswith("cannot read the model file")
            job = await core.switch("not-gguf")
            await job.done.wait()
        assert job.result == "failed" and job.failure is not None
        assert job.failure.reason == "model_corrupt", job.to_dict()  # llama-server's words, via the log


@pytest.mark.parametrize("view", [HangingView(), BrokenView()], ids=["hanging", "raising"])
async def test_memory_figures_that_hang_or_fail_let_the_switch_go_ahead(
    setup: Setup, view: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup.write(PROFILES)
    monkeypatch.setattr(scheduler, "PREFLIGHT_TIMEOUT_S", 0.3)
    async with core_with(setup, view) as core:
        with anyio.fail_after(30):
            job = await core.switch("fake-a")
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
        entry = {m["id"]: m["fit"] for m in core.list_models()}["fake-a"]
        assert entry["verdict"] == "unknown"  # list_models never saw figures either
