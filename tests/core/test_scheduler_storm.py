"""A storm of concurrent requests on two stand-in engines leaves a consistent world.

50 random ensure / force / unload / unload_all requests (seeded: LLM_MCP_STORM_SEED, and a
few fixed seeds) over 4 models, a conflicting pair on each engine, some loads failing. At
every container start no two conflicting models run (WatchedEngine checks it inside the
engine); once every job has ended: no job in flight, no orphan or leftover container, no
model that status calls running without a container, and compose/<model>.env files for
exactly what runs.
"""

from __future__ import annotations

import os

import anyio
import pytest

from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.memory import Script
from tests.core.conftest import Fleet, Request, storm, storm_findings, storm_plan, wait_until

pytestmark = pytest.mark.anyio

MODELS = ["alpha", "gamma", "far", "near"]  # alpha/gamma conflict on local, far/near on remote
SEEDS = sorted({2, 3, int(os.environ.get("LLM_MCP_STORM_SEED", "1"))})
CORRUPT = ("llama_model_load: error loading model: invalid magic characters",)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_storm_of_requests_leaves_no_conflict_no_orphan_and_no_job_behind(
    fleet: Fleet, fleet_core: Core, seed: int
) -> None:
    def script(r: Request) -> None:
        fleet.script(r.model, Script.fails(*CORRUPT, after=r.load_s) if r.fails else Script(load_s=r.load_s))

    plan = storm_plan(seed, MODELS)
    log = await storm(fleet_core, plan, script)
    with anyio.fail_after(5):
        for job in log.jobs:
            await job.done.wait()
    assert all(j.result in ("ready", "failed", "cancelled", "stopped") for j in log.jobs), log.summary()
    # An adoption or a restore may still be settling after the last request's job ended.
    await wait_until(lambda: fleet_core.status()["jobs"] == [], timeout=2)
    runtimes = fleet.runtimes
    findings = storm_findings(fleet_core, {name: rt.managed() for name, rt in runtimes.items()},
                              fleet.conflict, fleet.env_models())
    assert findings == [], f"seed {seed}: {log.summary()}"
    assert fleet.violations() == [], f"seed {seed}: {log.summary()}"
    assert fleet.engine.starts + fleet.remote.starts >= 4, log.summary()  # it really loaded things
