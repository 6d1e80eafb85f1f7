"""The storm of tests/core/test_scheduler_storm.py on REAL Docker: two engines, the fake image.

The machine's dockerd is `local`; the second engine (tests/engines.py, its own dockerd) is
`second`. Four profiles, a conflicting pair on each engine (a shared fixed port on local,
an exclusive one on second); 50 seeded random ensure / force / unload / unload_all requests.
A thread samples both engines' container lists all along (no two conflicting models at any
sample); once every job has ended: no job in flight, no orphan or leftover container, and
compose/<model>.env files for exactly what runs.
"""

# ruff: noqa: F811 - the second-engine fixtures are imported from tests/engines.py
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from llm_mcp.config.compose import env_files
from llm_mcp.config.models_conf import Config, load_config
from llm_mcp.config.placement import conflict
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.base import Runtime
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, Setup, free_port
from tests.core.conftest import ConflictSampler, storm, storm_findings, storm_plan, wait_until
from tests.engines import Engine, _module_engine, engine  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

MODELS = ["alpha", "gamma", "far", "near"]
SEED = int(os.environ.get("LLM_MCP_STORM_SEED", "8"))


def profiles(engine_host: str) -> str:
    shared, gamma_own, far, near = (free_port() for _ in range(4))
    del gamma_own

    def one(model_id: str, port: int, **extra: str) -> str:
        keys = "".join(f"{k} = {v}\n" for k, v in extra.items())
        return (f"\n[{model_id}]\nname = {model_id.title()}\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                f"gpus = none\nport = {port}\nflags = --fake-load-seconds 0.2\n{keys}")

    return (f"\n[engine second]\nurl = {engine_host}\n"
            + one("alpha", shared) + one("gamma", shared)  # the same fixed port: they conflict
            + one("far", far, engine="second") + one("near", near, engine="second", exclusive="true"))


@pytest.fixture
def two_engines(setup: Setup, engine: Engine) -> Iterator[Setup]:
    setup.write(profiles(engine.host))
    yield setup
    ids = engine.containers(setup.instance)
    if ids:
        engine.docker("rm", "-f", *ids, check=False)


def runtimes(config: Config) -> dict[str, Runtime]:
    return {name: DockerRuntime.for_settings(settings, instance=config.instance)
            for name, settings in config.engines.items()}


@pytest.fixture
async def storm_core(two_engines: Setup) -> AsyncIterator[Core]:
    path = two_engines.config_path
    core = Core(load_config=lambda: load_config(path), runtimes=runtimes(load_config(path)),
                state_dir=two_engines.state_dir)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


async def test_a_storm_on_two_real_engines_leaves_no_conflict_no_orphan_and_no_job_behind(
    two_engines: Setup, storm_core: Core
) -> None:
    config = load_config(two_engines.config_path)

    def conflicts(a: str, b: str) -> bool:
        return conflict(config.profile(a), config.profile(b)) is not None

    watch = runtimes(config)
    with ConflictSampler(watch, conflicts, interval=0.01) as sampler:
        log = await storm(storm_core, storm_plan(SEED, MODELS, spread=5.0))
        with anyio.fail_after(120):
            for job in log.jobs:
                await job.done.wait()
        await wait_until(lambda: storm_core.status()["jobs"] == [], timeout=30)
    findings = storm_findings(storm_core, {name: rt.managed() for name, rt in watch.items()}, conflicts,
                              set(env_files(two_engines.root / "compose")))
    assert findings == [], f"seed {SEED}: {log.summary()}"
    assert sampler.violations == [], f"seed {SEED}: {log.summary()}"
    assert sampler.samples > 50 and sampler.most_running >= 2, (sampler.samples, sampler.most_running)
    assert sum(j.result == "ready" for j in log.jobs) >= 4, log.summary()
