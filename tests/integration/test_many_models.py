"""Several models at once on the real llama-server image and real Docker.

Two profiles that do not conflict (no GPU, their own ports; one `port = auto`) run side
by side and both answer a chat completion; a third that pins the first one's port
replaces only that one; unloading it leaves the other serving. A thread samples
Docker's container list all along: at no sample do two conflicting models run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from llm_mcp.config.compose import env_files
from llm_mcp.config.models_conf import load_config
from llm_mcp.config.placement import conflict
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime
from tests.conftest import REAL_IMAGE, Setup, free_port
from tests.core.conftest import ConflictSampler

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]


def profile(profile_id: str, model: str, port: int | str, image: str = REAL_IMAGE) -> str:
    return (f"\n[{profile_id}]\nname = {profile_id.title()}\nmodel = {model}\nimage = {image}\n"
            f"ctx_size = 256\nn_gpu_layers = 0\ngpus = none\nport = {port}\n"
            "flags = --threads 1 --parallel 1 --no-warmup\n")


@pytest.fixture
def shared_port() -> int:
    return free_port()


@pytest.fixture
def many(setup: Setup, real_image: str, shared_port: int) -> Setup:
    # one: a fixed port; two: auto; three: one's port (so it conflicts with one, not with two)
    setup.write(profile("one", "tiny-a.gguf", shared_port, real_image)
                + profile("two", "tiny-b.gguf", "auto", real_image)
                + profile("three", "tiny-b.gguf", shared_port, real_image))
    return setup


@pytest.fixture
async def many_core(many: Setup) -> AsyncIterator[Core]:
    path = many.config_path
    core = Core(load_config=lambda: load_config(path), runtimes={"local": DockerRuntime(many.instance)},
                state_dir=many.state_dir)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        yield core
        tg.cancel_scope.cancel()


def conflicts(s: Setup) -> ConflictSampler:
    config = load_config(s.config_path)

    def rule(a: str, b: str) -> bool:
        return a not in config.profiles or b not in config.profiles or \
            conflict(config.profile(a), config.profile(b)) is not None

    return ConflictSampler({"local": DockerRuntime(s.instance)}, rule, interval=0.01)


async def chat(endpoint: str) -> str:
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{endpoint}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["role"])


def by_id(core: Core) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in core.status()["models"]}


async def test_two_models_that_do_not_conflict_serve_at_once_and_a_third_replaces_only_its_conflict(
    many: Setup, many_core: Core, shared_port: int
) -> None:
    with conflicts(many) as sampler:
        with anyio.fail_after(60):
            one = await many_core.ensure("one")
            two = await many_core.ensure("two")  # loads beside one, not after it
            assert two.stops == [] and one.stops == []
            await one.done.wait()
            await two.done.wait()
        assert one.result == "ready" and two.result == "ready", (one.to_dict(), two.to_dict())
        models = by_id(many_core)
        assert {m: e["state"] for m, e in models.items()} == {"one": "ready", "two": "ready"}
        assert models["one"]["port"] == shared_port
        auto = models["two"]["port"]
        assert isinstance(auto, int) and auto not in (0, shared_port)  # Docker's pick, read back
        endpoints = {m: str(e["endpoint"]) for m, e in models.items()}
        assert endpoints["two"].endswith(f":{auto}")
        with anyio.fail_after(60):  # both answer, at the same time
            async with anyio.create_task_group() as tg:
                for endpoint in endpoints.values():
                    tg.start_soon(chat, endpoint)
        two_container = models["two"]["container"]

        with anyio.fail_after(60):
            three = await many_core.ensure("three")
            assert three.stops == ["one"], three.to_dict()
            await three.done.wait()
        assert three.result == "ready", three.to_dict()
        models = by_id(many_core)
        assert {m: e["state"] for m, e in models.items() if e["state"] != "stopped"} == {
            "two": "ready", "three": "ready"}
        assert models["two"]["container"]["id"] == two_container["id"]  # never touched
        with anyio.fail_after(60):
            assert await chat(str(models["three"]["endpoint"])) == "assistant"
            assert await chat(endpoints["two"]) == "assistant"  # served on through the replacement
        running = sorted(c.profile for c in DockerRuntime(many.instance).managed() if c.running)
        assert running == ["three", "two"]
        assert set(env_files(many.root / "compose")) == {"three", "two"}

        with anyio.fail_after(60):  # unload one: the other serves on
            gone = await many_core.unload("three")
            await gone.done.wait()
            assert await chat(endpoints["two"]) == "assistant"
        assert gone.failure is None, gone.to_dict()
        assert [c.profile for c in DockerRuntime(many.instance).managed()] == ["two"]
        assert set(env_files(many.root / "compose")) == {"two"}
    assert sampler.violations == [], sampler.violations
    assert sampler.most_running == 2
    assert sampler.samples > 20
