"""The pre-flight reads memory on this machine only: a profile on another engine is never judged
by this machine's figures (stand-in engines; a memory view that says nothing fits here)."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.preflight import DeviceMemory, MemorySnapshot
from llm_mcp.core.scheduler import Core
from llm_mcp.demo.tiny_model import write_tiny_model
from tests.core.conftest import Fleet, ensured

pytestmark = pytest.mark.anyio


class NothingFree:
    """A memory view whose machine has no memory left (every local load would be refused)."""

    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        return MemorySnapshot((DeviceMemory("host", 0), DeviceMemory("gpu0", 0), DeviceMemory("gpu1", 0)))


async def test_a_profile_on_another_engine_is_not_refused_by_this_machines_memory(fleet: Fleet) -> None:
    write_tiny_model(fleet.root / "models" / "alpha.gguf")  # a real header: an estimate is made
    path = fleet.config_path
    core = Core(load_config=lambda: load_config(path), runtimes=fleet.runtimes,
                state_dir=fleet.root / "state", probe_factory=fleet.probe, health_interval=0.005,
                clock=fleet.engine.clock, memory_view=NothingFree())
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        await core.update_fits(wait=5)  # as the daemon does before list_models
        far = next(m for m in core.list_models() if m["id"] == "far")
        assert far["fit"]["verdict"] == "unknown" and "engine 'remote'" in far["fit"]["message"], far["fit"]
        alpha = next(m for m in core.list_models() if m["id"] == "alpha")  # local: judged, refused
        assert alpha["fit"]["verdict"] == "wont_fit", alpha["fit"]
        job = await ensured(core, "far")
        assert job.result == "ready", job.to_dict()
        tg.cancel_scope.cancel()


class OnlyHostFree:
    """A machine whose GPUs are full and whose host has 8 GiB free."""

    async def snapshot(self, container_id: str | None, name: str | None = None) -> MemorySnapshot:
        return MemorySnapshot((DeviceMemory("host", 8 << 30), DeviceMemory("gpu0", 0),
                               DeviceMemory("gpu1", 0)))


async def test_a_cpu_only_profile_is_judged_against_host_memory_alone(fleet: Fleet) -> None:
    write_tiny_model(fleet.root / "models" / "alpha.gguf")
    write_tiny_model(fleet.root / "models" / "beta.gguf")
    path = fleet.config_path
    core = Core(load_config=lambda: load_config(path), runtimes=fleet.runtimes,
                state_dir=fleet.root / "state", probe_factory=fleet.probe, health_interval=0.005,
                clock=fleet.engine.clock, memory_view=OnlyHostFree())
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        await core.update_fits(wait=5)
        fits = {m["id"]: m["fit"] for m in core.list_models()}
        assert fits["delta"]["verdict"] == "fits", fits["delta"]  # gpus = none: the host has room
        assert [d["device"] for d in fits["delta"]["devices"]] == ["host"]
        assert fits["alpha"]["verdict"] == "wont_fit", fits["alpha"]  # gpus = 0: that GPU is full
        tg.cancel_scope.cancel()
