"""A switch to a profile that does not fit is refused before anything stops; the model runs on.

Real Docker, real containers. (a) GPU figures from the NVML STAND-IN of tests/unit/nvml_standin.py
(no GPU here), whose process list names the running container's real host pid. (b) Host RAM:
this machine's own MemAvailable (psutil) and the running llama-server container's own memory
(Docker stats), against a header-only model (sparse file) that needs more RAM than the machine has.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.memory_view import LiveMemoryView
from llm_mcp.core.preflight import WontFit
from llm_mcp.core.scheduler import Core
from llm_mcp.demo.shaped_model import Shape, write_header_only_model
from llm_mcp.hardware.fit_estimate import estimate
from llm_mcp.hardware.fit_settings import settings_from_args
from llm_mcp.hardware.gguf_info import read_model_info
from llm_mcp.hardware.gpu import GpuSampler
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, REAL_IMAGE, ContainerCounter, Setup
from tests.unit.nvml_standin import GIB, FakeGpu, FakeProcess, NvmlStandIn

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

REFUSAL_BUDGET_S = 0.1
# ~48 layers of a 5120-wide model in Q4_K: ~8 GiB of weights, all on the GPU.
GPU_SHAPE = Shape(n_layer=48, n_embd=5120, n_head=40, n_head_kv=8, n_ff=13824, n_ctx_train=65536)
# ~70B in Q4_K: ~37 GiB of weights, more than this machine's RAM.
HOST_SHAPE = Shape(n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672)


@pytest.fixture
def pre_setup(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[Setup]:
    """A setup of its own: the tiny model plus header-only (sparse) big models."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(models_dir / "tiny-a.gguf", models / "tiny-a.gguf")
    write_header_only_model(models / "gpu-8g.gguf", GPU_SHAPE, n_vocab=32000)
    write_header_only_model(models / "host-37g.gguf", HOST_SHAPE, n_vocab=32000)
    s = Setup(tmp_path, models)
    yield s
    s.cleanup()


async def health(endpoint: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{endpoint}/health")).status_code


ViewFor = Callable[[DockerRuntime, Callable[[], str | None]], LiveMemoryView]


@asynccontextmanager
async def running_core(s: Setup, view_for: ViewFor) -> AsyncIterator[tuple[Core, DockerRuntime]]:
    """A core whose memory view is built by ``view_for(runtime, current container id)``."""
    runtime = DockerRuntime(s.instance)
    config = s.config_path
    holder: list[Core] = []
    core = Core(load_config=lambda: load_config(config), runtime=runtime, state_dir=s.state_dir,
                memory_view=view_for(runtime, lambda: holder[0].container_id))
    holder.append(core)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core, runtime
        tg.cancel_scope.cancel()


async def refused(core: Core, profile_id: str) -> tuple[WontFit, float]:
    started = time.perf_counter()
    with pytest.raises(WontFit) as info:
        await core.switch(profile_id)
    took = time.perf_counter() - started
    print(f"pre-flight refusal of {profile_id}: {took * 1000:.1f} ms")  # the number docs/fit.md quotes
    return info.value, took


async def test_gpu_profile_that_does_not_fit_is_refused_fast_and_one_that_fits_by_replacing_loads(
    pre_setup: Setup,
) -> None:
    s = pre_setup
    s.write(f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}

[gpu-ok]
name = GPU OK
model = gpu-8g.gguf
image = {FAKE_IMAGE}
ctx_size = 4096

[gpu-big]
name = GPU Big
model = gpu-8g.gguf
image = {FAKE_IMAGE}
ctx_size = 65536
""")
    config = load_config(s.config_path)
    ok_need = estimate(read_model_info(s.models / "gpu-8g.gguf"),
                       settings_from_args(config.profile("gpu-ok").server_args()), n_gpus=1).device("gpu0")
    # NVML STAND-IN: one GPU; the running container's process holds 6 GiB of it, and what is
    # free now is 3 GiB short of what gpu-ok needs: it fits only once Fake A is gone.
    held = 6 * GIB
    total = 48 * GIB
    free_now = ok_need.total - 3 * GIB
    gpu = FakeGpu(memory_total=total, memory_used=total - free_now, compute=[])
    nvml = NvmlStandIn([gpu])

    def view(runtime: DockerRuntime, container_id: Callable[[], str | None]) -> LiveMemoryView:
        def our_pids() -> set[int]:
            cid = container_id()
            return runtime.container_pids(cid) if cid else set()

        return LiveMemoryView(gpu_sample=GpuSampler(nvml, container_pids=our_pids).sample,
                              container_pids=runtime.container_pids)

    async with running_core(s, view) as (core, runtime):
        with anyio.fail_after(30):
            job = await core.switch("fake-a")
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
        info = runtime.inspect(core.container_id or "")
        assert info is not None and info.pid
        gpu.compute = [FakeProcess(info.pid, held)]  # the stand-in's process is the real container's pid
        container = core.status()["container"]["id"]
        endpoint = core.status()["endpoint"]

        with anyio.fail_after(10):
            error, took = await refused(core, "gpu-big")
        assert took < REFUSAL_BUDGET_S, f"refusal took {took * 1000:.0f} ms"
        fit = error.preflight.to_dict()
        assert fit["verdict"] == "wont_fit"
        gpu0 = next(d for d in fit["devices"] if d["device"] == "gpu0")
        assert gpu0["free_bytes"] == free_now + held
        assert gpu0["need_bytes"] > free_now + held
        assert "on gpu0" in str(error) and "counting the 6.00 GiB that Fake A holds" in str(error)
        assert "nothing was stopped" in str(error) and "llm-mcp fit gpu-big --suggest" in error.hint
        # the running model is untouched: same container, ready, answering
        assert core.status()["state"] == "ready" and core.status()["container"]["id"] == container
        assert await health(endpoint) == 200
        assert any("switch to GPU Big refused" in ln.text for ln in core.logbook.tail(20))

        # gpu-ok needs more than is free now, but less than that plus Fake A's 6 GiB: it loads.
        with anyio.fail_after(30):
            job = await core.switch("gpu-ok")
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
        assert core.status()["profile"]["id"] == "gpu-ok"


@pytest.mark.real_llama
async def test_host_profile_needing_more_ram_than_the_machine_is_refused_fast_and_force_loads_it_anyway(
    pre_setup: Setup, real_image: str,
) -> None:
    s = pre_setup
    s.write(f"""
[real-a]
name = Real A
model = tiny-a.gguf
image = {REAL_IMAGE}
ctx_size = 256
n_gpu_layers = 0
flags = --threads 1 --parallel 1 --no-warmup

[huge]
name = Huge
model = host-37g.gguf
image = {FAKE_IMAGE}
ctx_size = 4096
n_gpu_layers = 0
flags = --fake-scenario oom
""")

    def view(runtime: DockerRuntime, container_id: Callable[[], str | None]) -> LiveMemoryView:
        return LiveMemoryView(gpu_sample=GpuSampler(NvmlStandIn(library_missing=True)).sample,
                              container_pids=runtime.container_pids)  # a CPU machine: no NVML library

    counter = ContainerCounter(s)
    async with anyio.create_task_group() as counting:
        await counting.start(counter.run)
        async with running_core(s, view) as (core, _runtime):
            with anyio.fail_after(60):
                job = await core.switch("real-a")
                await job.done.wait()
            assert job.result == "ready", job.to_dict()
            status = core.status()
            endpoint, container = status["endpoint"], status["container"]["id"]
            with anyio.fail_after(10):
                await core.update_fits(wait=10)  # what list_models does (the daemon also warms at start)
            models = {m["id"]: m for m in core.list_models()}
            assert models["huge"]["fit"]["verdict"] == "wont_fit"
            assert models["real-a"]["fit"]["verdict"] == "fits"

            with anyio.fail_after(10):
                error, took = await refused(core, "huge")
            assert took < REFUSAL_BUDGET_S, f"refusal took {took * 1000:.0f} ms"
            host = error.preflight.devices[0]
            assert host.device == "host" and host.verdict == "wont_fit"
            assert host.need > psutil.virtual_memory().total  # the header says: more than this machine has
            assert host.held > 0  # the llama-server container's own memory, from Docker's stats
            assert host.free is not None and f"on host, {host.free / GIB:.2f} GiB free" in str(error)
            assert "that Real A holds" in str(error)
            assert core.status()["state"] == "ready" and core.status()["container"]["id"] == container
            assert await health(endpoint) == 200
            assert counter.max_alive == 1, "a container was created or replaced for the refused switch"

            # force: no pre-flight; the load fails the usual way and Real A comes back.
            with anyio.fail_after(90):
                job = await core.switch("huge", force=True)
                await job.done.wait()
            assert job.result == "failed" and job.failure is not None
            assert job.failure.reason == "out_of_memory", job.to_dict()
            assert job.restored is True
            assert core.status()["state"] == "ready" and core.status()["profile"]["id"] == "real-a"
            assert await health(core.status()["endpoint"]) == 200
        counting.cancel_scope.cancel()
