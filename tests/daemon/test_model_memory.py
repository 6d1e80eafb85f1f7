"""ps' MEMORY column: GPU memory of a model's processes when NVML lists them, else host memory."""

from __future__ import annotations

import os

import anyio
import pytest

from llm_mcp.daemon.model_memory import MIB, ModelMemory, gpu_bytes

SNAPSHOT = {"available": True, "gpus": [
    {"index": 0, "processes": [{"pid": 10, "used_mib": 1000.0, "ours": True},
                               {"pid": 99, "used_mib": 50.0, "ours": False}]},
    {"index": 1, "processes": [{"pid": 11, "used_mib": 24.0, "ours": True}]},
]}


def test_gpu_memory_of_a_models_processes_sums_every_gpu_and_only_its_pids() -> None:
    assert gpu_bytes(SNAPSHOT, {10, 11}) == 1024 * MIB
    assert gpu_bytes(SNAPSHOT, {12}) is None  # NVML does not list it: no GPU number
    assert gpu_bytes({"available": False, "reason": "no GPU"}, {10}) is None
    assert gpu_bytes(None, {10}) is None


@pytest.mark.anyio
async def test_a_model_without_gpu_processes_reports_its_resident_host_memory() -> None:
    me = os.getpid()  # a real process stands for the container's: psutil reads it as it would one
    memory = ModelMemory(lambda: {"alpha": "c" * 64}, lambda _cid: {me}, lambda: None, interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(memory.run)
        assert memory.get("alpha") is None  # nothing looked yet: status never waits for docker top
        with anyio.fail_after(2):
            while memory.get("alpha") is None:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    held = memory.get("alpha")
    assert held is not None and 10 * MIB < held < 4096 * MIB


@pytest.mark.anyio
async def test_a_container_that_cannot_be_read_has_no_number_and_the_loop_goes_on() -> None:
    def gone(_cid: str) -> set[int]:
        raise RuntimeError("the container went")

    memory = ModelMemory(lambda: {"alpha": "c" * 64}, gone, lambda: SNAPSHOT, interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(memory.run)
        memory.get("alpha")
        await anyio.sleep(0.2)
        assert memory.get("alpha") is None
        tg.cancel_scope.cancel()
