"""A switch is a job: joined, refused, or replaced with force; never two containers, never stuck."""

from __future__ import annotations

import random

import anyio
import pytest

from llm_mcp.core.scheduler import Core, Job, SwitchError, SwitchRefused
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ContainerCounter, Setup, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SLOW = f"""
[slow]
name = Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 3

[slow-c]
name = Slow C
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 1
"""


@pytest.fixture
def slow_setup(setup: Setup) -> Setup:
    setup.write(FAKE_PROFILES + SLOW)
    return setup


async def loading(core: Core, profile_id: str) -> Job:
    job = await core.switch(profile_id)
    await wait_until(lambda: job.phase not in ("queued", "starting"), 10)
    assert job.phase not in ("ready", "failed"), job.to_dict()
    return job


async def test_a_second_request_for_the_loading_profile_joins_the_same_job(
    slow_setup: Setup, core: Core
) -> None:
    first = await loading(core, "slow")
    second = await core.switch("slow")
    assert second is first
    assert core.status()["job"]["id"] == first.id
    with anyio.fail_after(15):
        await second.done.wait()
    assert first.result == "ready"


async def test_a_request_for_another_profile_is_refused_naming_the_job_in_flight(
    slow_setup: Setup, core: Core
) -> None:
    first = await loading(core, "slow")
    with pytest.raises(SwitchRefused) as refused:
        await core.switch("fake-a")
    assert refused.value.job is first
    assert first.id in str(refused.value)
    assert "slow" in str(refused.value)
    assert "force" in str(refused.value)
    with pytest.raises(SwitchRefused):
        await core.stop_model()
    with anyio.fail_after(15):
        await first.done.wait()
    assert first.result == "ready"
    assert core.status()["profile"]["id"] == "slow"


async def test_force_replaces_the_loading_job_which_ends_cancelled(
    slow_setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    first = await loading(core, "slow")
    second = await core.switch("fake-a", force=True)
    assert second is not first
    with anyio.fail_after(15):
        await second.done.wait()
    assert first.done.is_set()
    assert first.result == "cancelled"
    assert first.replaced_by == second.id
    assert first.to_dict()["replaced_by"] == second.id
    assert second.result == "ready", second.to_dict()
    assert core.status()["profile"]["id"] == "fake-a"
    assert core.current_job is None
    assert counter.max_alive == 1
    assert len(counter.list()) == 1


async def test_force_stop_cancels_a_load_and_leaves_nothing_running(
    slow_setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    first = await loading(core, "slow")
    stop = await core.stop_model(force=True)
    with anyio.fail_after(15):
        await stop.done.wait()
    assert first.result == "cancelled"
    assert stop.result == "stopped"
    assert core.status()["state"] == "stopped"
    assert counter.list() == []


async def test_an_unknown_profile_is_a_switch_error_listing_the_valid_ids(
    slow_setup: Setup, core: Core
) -> None:
    with pytest.raises(SwitchError) as error:
        await core.switch("fake-z")
    assert error.value.reason == "unknown_model"
    assert "fake-a" in error.value.valid
    assert core.current_job is None
    assert core.status()["state"] == "stopped"


async def test_twenty_concurrent_random_requests_never_leave_two_containers_or_a_stuck_state(
    slow_setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    rng = random.Random(20)
    jobs: list[Job] = []
    refused: list[SwitchRefused] = []

    async def request(delay: float, profile_id: str, force: bool) -> None:
        await anyio.sleep(delay)
        try:
            jobs.append(await core.switch(profile_id, force=force))
        except SwitchRefused as exc:
            refused.append(exc)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(request, rng.uniform(0, 3), rng.choice(["fake-a", "fake-b", "slow-c"]),
                              rng.random() < 0.5)
        for job in jobs:
            await job.done.wait()
        await wait_until(lambda: core.current_job is None, 30)

    assert len(jobs) + len(refused) == 20
    assert all(job.result in ("ready", "failed", "cancelled") for job in jobs), \
        [job.to_dict() for job in jobs]
    assert any(job.result == "cancelled" for job in jobs)
    status = core.status()
    assert status["state"] in ("ready", "failed"), status
    assert status["job"] is None
    assert counter.max_alive <= 1, "Docker's events saw two containers alive at once"
    assert counter.max_listed <= 1, "the container list showed two containers at once"
    if status["state"] == "ready":
        assert len(counter.list()) == 1
    if jobs[-1].result == "ready":  # the last job asked for is the last one run
        assert status["profile"]["id"] == jobs[-1].profile
