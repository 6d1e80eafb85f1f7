"""list_models stays fast with the fit verdicts: 40 profiles over real-size GGUF headers.

The headers are read once (the daemon does it when it starts); later calls re-judge cached
estimates against fresh memory figures (psutil, Docker), or reuse verdicts under a second old.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core import scheduler
from llm_mcp.core.memory_view import LiveMemoryView
from llm_mcp.core.scheduler import Core
from llm_mcp.demo.shaped_model import Shape, write_header_only_model
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import Setup

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SHAPES = [Shape(n_layer=n, n_embd=e, n_head=e // 128, n_head_kv=8, n_ff=e * 3) for n, e in
          ((28, 2048), (36, 4096), (48, 5120), (64, 5120))]


async def test_list_models_with_fit_for_40_profiles_stays_fast(
    tmp_path: Path, setup: Setup, monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = tmp_path / "headers"
    for i, shape in enumerate(SHAPES):
        write_header_only_model(models / f"m{i}.gguf", shape)  # a 152k-token vocabulary each
    profiles = "".join(f"\n[p{k}]\nmodel = m{k % 4}.gguf\nmodels_dir = {models}\n"
                       f"ctx_size = {4096 * (1 + k % 5)}\n" for k in range(40))
    setup.write(profiles)
    config = setup.config_path
    runtime = DockerRuntime(setup.instance)
    core = Core(load_config=lambda: load_config(config), runtime=runtime, state_dir=setup.state_dir,
                memory_view=LiveMemoryView(gpu_sample=None, container_pids=runtime.container_pids))
    monkeypatch.setattr(scheduler, "FITS_FRESH_S", 0.0)  # every call takes fresh figures
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        with anyio.fail_after(60):
            started = time.perf_counter()
            await core.update_fits(wait=60)  # what the daemon does at start: read every header
            cold = time.perf_counter() - started
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                await core.update_fits()
                listed = core.list_models()
                timings.append(time.perf_counter() - started)
        verdicts = {m["fit"]["verdict"] for m in listed}
        assert len(listed) == 40 and verdicts <= {"fits", "tight", "wont_fit"}, verdicts
        warm = sorted(timings)[len(timings) // 2]
        print(f"list_models with fit, 40 profiles: first {cold * 1000:.0f} ms (headers read), "
              f"then {warm * 1000:.1f} ms median (fresh memory figures, cached estimates)")
        assert warm < 0.1
        monkeypatch.setattr(scheduler, "FITS_FRESH_S", 1.0)
        started = time.perf_counter()
        await core.update_fits()
        core.list_models()
        burst = time.perf_counter() - started
        print(f"a call within a second of the last: {burst * 1000:.1f} ms")
        assert burst < 0.05
        tg.cancel_scope.cancel()
