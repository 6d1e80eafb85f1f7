"""A model on a second REAL Docker Engine beside one on the machine's own (issue 8's must-show).

The second engine is a dockerd the tests start on their own socket and data root
(tests/engines.py): `engine` runs with --live-restore, `plain_engine` without. A model on it
loads and answers; stopping that engine makes its model `unreachable` with a reason within
2 s while the local model keeps answering; starting it again brings the model back by
adoption, without a reload (live-restore), or shows it stopped with the reason (without).
"""

# ruff: noqa: F811 - the second-engine fixtures are imported from tests/engines.py
from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from llm_mcp.config.models_conf import load_config
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import FAKE_IMAGE, Setup, free_port, wait_until
from tests.engines import Engine, _module_engine, _plain_engine, engine, plain_engine  # noqa: F401

# docker-py leaks the socket of each failed unix connect while an engine is down (the GC
# closes them): collected in each test, under this module's filter.
pytestmark = [pytest.mark.anyio, pytest.mark.docker,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def _profiles(engine_host: str) -> str:
    def one(model_id: str, **extra: str) -> str:
        keys = "".join(f"{k} = {v}\n" for k, v in extra.items())
        return (f"\n[{model_id}]\nname = {model_id.title()}\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                f"gpus = none\nport = {free_port()}\n{keys}")

    return f"\n[engine second]\nurl = {engine_host}\n" + one("here") + one("there", engine="second")


@asynccontextmanager
async def _core(setup: Setup, second: Engine) -> AsyncIterator[Core]:
    second.load_image(FAKE_IMAGE)
    setup.write(_profiles(second.host))
    config = load_config(setup.config_path)
    runtimes = {name: DockerRuntime.for_settings(s, instance=config.instance)
                for name, s in config.engines.items()}
    core = Core(load_config=lambda: load_config(setup.config_path), runtimes=runtimes,
                state_dir=setup.state_dir)
    core.engines["second"].link.first_delay = 0.2  # reconnect promptly once it is back
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(core.run)
            yield core
            tg.cancel_scope.cancel()
    finally:
        second.start()
        ids = second.containers(setup.instance)
        if ids:
            second.docker("rm", "-f", *ids, check=False)
        gc.collect()


def _entry(core: Core, model: str) -> dict[str, Any]:
    return next((m for m in core.status()["models"] if m["id"] == model), {"state": "absent"})


async def _answers(core: Core, model: str) -> bool:
    endpoint = _entry(core, model).get("endpoint")
    if not endpoint:
        return False
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(f"{endpoint}/v1/chat/completions",
                                  json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    return reply.status_code == 200 and bool(reply.json()["choices"])


async def _both_ready(core: Core) -> None:
    for model in ("here", "there"):
        job = await core.ensure(model)
        with anyio.fail_after(60):
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
    assert await _answers(core, "here") and await _answers(core, "there")


async def test_a_model_on_a_second_engine_survives_its_outage_and_is_adopted_without_a_reload(
    setup: Setup, engine: Engine
) -> None:
    async with _core(setup, engine) as core:
        await _both_ready(core)
        before = _entry(core, "there")["container"]
        engine.stop()
        stopped = time.monotonic()
        await wait_until(lambda: _entry(core, "there")["state"] == "unreachable", 5)
        noticed = time.monotonic() - stopped
        assert noticed < 2.0, noticed
        there = _entry(core, "there")
        assert there["reason_code"] == "docker_unavailable" and there["reason"] and there["hint"], there
        assert _entry(core, "here")["state"] == "ready" and await _answers(core, "here")  # serves on
        engines = {e["name"]: e for e in core.status()["engines"]}
        assert engines["second"]["available"] is False and engines["local"]["available"] is True
        engine.start()
        await wait_until(lambda: _entry(core, "there")["state"] == "ready", 30)
        after = _entry(core, "there")["container"]
        assert after["id"] == before["id"] and after["started_at"] == before["started_at"]  # no reload
        assert await _answers(core, "there") and await _answers(core, "here")
        assert core.status()["jobs"] == []


async def test_without_live_restore_the_engines_return_shows_its_model_stopped_with_the_reason(
    setup: Setup, plain_engine: Engine
) -> None:
    async with _core(setup, plain_engine) as core:
        await _both_ready(core)
        plain_engine.stop()  # its containers stop with it
        await wait_until(lambda: _entry(core, "there")["state"] == "unreachable", 5)
        assert await _answers(core, "here")
        plain_engine.start()
        # Back: the dead leftover is cleared by the adoption pass (the stop may be known earlier).
        await wait_until(lambda: _entry(core, "there")["state"] != "unreachable"
                         and core.engines["second"].link.available
                         and not plain_engine.containers(setup.instance), 30)
        there = _entry(core, "there")
        assert there["state"] == "stopped" and there["reason_code"] == "container_gone", there
        assert there["reason"] and there["container"] is None
        assert _entry(core, "here")["state"] == "ready" and core.running_ids() == {"here"}
