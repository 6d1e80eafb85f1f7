"""Switching between two tiny models on the real llama-server image."""

from __future__ import annotations

import shlex

import anyio
import httpx
import pytest

from llm_mcp.core.scheduler import Core
from tests.conftest import ContainerCounter, Setup, read_env_file, real_profiles

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]


@pytest.fixture
def real_setup(setup: Setup, real_image: str) -> Setup:
    setup.write(real_profiles(real_image))
    return setup


async def chat(endpoint: str) -> dict[str, object]:
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{endpoint}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


async def test_stopped_to_a_to_b_to_a_keeps_exactly_one_answering_container(
    real_setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    assert core.status()["state"] == "stopped"
    assert counter.list() == []
    env_path = real_setup.root / "compose" / ".env"
    for profile_id in ("real-a", "real-b", "real-a"):
        with anyio.fail_after(30):
            job = await core.switch(profile_id)
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
        status = core.status()
        assert status["state"] == "ready"
        assert status["profile"]["id"] == profile_id
        assert status["health"] == "ok"

        containers = counter.list()
        assert len(containers) == 1
        assert containers[0].startswith(status["container"]["id"])

        with anyio.fail_after(30):
            answer = await chat(status["endpoint"])
        assert answer["choices"][0]["message"]["role"] == "assistant"  # type: ignore[index]

        profile = core.config().profile(profile_id)
        env = read_env_file(env_path)
        assert env["LLM_PROFILE"] == profile_id
        assert env["LLAMA_ARGS"] == shlex.join(profile.server_args())
        assert env["LLM_PORT"] == str(real_setup.port)
        inspected = counter.runtime.client.api.inspect_container(containers[0])
        assert inspected["Args"] == shlex.split(env["LLAMA_ARGS"])
        assert inspected["Config"]["Labels"]["io.llm-mcp.profile"] == profile_id

    assert counter.max_alive == 1, "Docker's events saw two containers alive at once"
    assert counter.max_listed == 1, "the container list showed two containers at once"
    assert counter.polls > 10


async def test_switch_to_the_loaded_profile_is_a_finished_job_without_a_restart(
    real_setup: Setup, core: Core
) -> None:
    with anyio.fail_after(30):
        first = await core.switch("real-a")
        await first.done.wait()
    container = core.status()["container"]["id"]
    again = await core.switch("real-a")
    assert again.done.is_set()
    assert again.result == "ready"
    assert again.detail == "already loaded"
    assert core.status()["container"]["id"] == container


async def test_stop_removes_the_container_and_says_stopped(
    real_setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    with anyio.fail_after(30):
        job = await core.switch("real-b")
        await job.done.wait()
        stop = await core.stop_model()
        await stop.done.wait()
    assert stop.result == "stopped"
    status = core.status()
    assert status["state"] == "stopped"
    assert status["container"] is None
    assert counter.list() == []
