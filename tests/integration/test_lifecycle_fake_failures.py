"""Faults the fake llama-server injects: each ends `failed` with its reason; the previous model returns."""

from __future__ import annotations

import anyio
import pytest

from llm_mcp.core.scheduler import Core, Job
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ContainerCounter, Setup

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def with_fault(setup: Setup, flags: str, extra: str = "") -> None:
    setup.write(FAKE_PROFILES + f"\n[faulty]\nname = Faulty\nmodel = tiny-b.gguf\nimage = {FAKE_IMAGE}\n"
                f"flags = {flags}\n{extra}")


async def fail_and_restore(core: Core, profile_id: str = "faulty", timeout: float = 20) -> Job:
    with anyio.fail_after(20):
        first = await core.switch("fake-a")
        await first.done.wait()
    assert first.result == "ready", first.to_dict()
    with anyio.fail_after(timeout):
        job = await core.switch(profile_id)
        await job.done.wait()
    assert job.result == "failed", job.to_dict()
    assert job.restored is True, job.to_dict()
    status = core.status()
    assert status["state"] == "ready"
    assert status["profile"]["id"] == "fake-a"
    assert status["health"] == "ok"
    assert status["last_switch"]["reason"] == job.failure.reason  # type: ignore[union-attr]
    assert status["last_switch"]["log_lines"] == job.log_lines
    return job


def phase_at(job: Job, phase: str) -> float:
    return float(next(p["at"] for p in job.phases if p["phase"] == phase))


async def test_a_crash_during_load_fails_as_crashed_with_its_lines_and_restores(
    setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    with_fault(setup, "--fake-scenario crash-load --fake-load-seconds 1")
    job = await fail_and_restore(core)
    assert job.failure is not None
    assert job.failure.reason == "crashed", job.to_dict()
    assert "signal 11" in job.failure.message
    assert any("GGML_ASSERT" in line for line in job.log_lines), job.log_lines
    assert any("Segmentation fault" in line for line in job.log_lines), job.log_lines
    assert phase_at(job, "restoring_previous") < 4.0
    assert counter.max_alive == 1


async def test_a_stalled_load_fails_within_the_stall_timeout_plus_one_second(
    setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    with_fault(setup, "--fake-scenario stall", "stall_timeout = 2\n")
    job = await fail_and_restore(core)
    assert job.failure is not None
    assert job.failure.reason == "stalled", job.to_dict()
    # From the moment the container was up and loading to the verdict.
    assert phase_at(job, "restoring_previous") - phase_at(job, "loading") <= 2 + 1, job.phases
    assert any("loading model" in line for line in job.log_lines), job.log_lines
    assert counter.max_alive == 1


async def test_out_of_memory_fails_as_out_of_memory_with_the_cuda_lines_and_restores(
    setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    with_fault(setup, "--fake-scenario oom")
    job = await fail_and_restore(core)
    assert job.failure is not None
    assert job.failure.reason == "out_of_memory", job.to_dict()
    assert any("cudaMalloc failed: out of memory" in line for line in job.log_lines), job.log_lines
    assert any("failed to allocate CUDA0 buffer" in line for line in job.log_lines), job.log_lines
    assert job.failure.hint
    assert phase_at(job, "restoring_previous") < 4.0
    assert counter.max_alive == 1


async def test_a_missing_image_fails_as_image_missing_without_touching_docker_state(
    setup: Setup, counter: ContainerCounter, core: Core
) -> None:
    setup.write(FAKE_PROFILES + "\n[ghost]\nmodel = tiny-b.gguf\nimage = llm-mcp-test/no-such-image:1\n")
    job = await fail_and_restore(core, "ghost")
    assert job.failure is not None
    assert job.failure.reason == "image_missing"
    assert job.log_lines == ["llm-mcp-test/no-such-image:1"]


async def test_a_crash_after_ready_turns_the_state_failed_with_reason_and_lines(
    setup: Setup, core: Core
) -> None:
    with_fault(setup, "--fake-scenario crash-after-ready --fake-exit-after 0.5")
    with anyio.fail_after(20):
        job = await core.switch("faulty")
        await job.done.wait()
    assert job.result == "ready"
    with anyio.fail_after(10):
        while core.status()["state"] != "failed":
            await anyio.sleep(0.02)
    status = core.status()
    assert status["reason"] == "llama-server exited with code 1"
    assert status["hint"]
    assert status["container"] is None
    crash = status["last_switch"]
    assert crash["kind"] == "crash"
    assert crash["reason"] == "exited"
    assert any("fatal error: the fake server crashes" in line for line in crash["log_lines"])


async def test_a_failure_with_nothing_to_restore_leaves_state_failed(setup: Setup, core: Core) -> None:
    with_fault(setup, "--fake-scenario oom")
    with anyio.fail_after(20):
        job = await core.switch("faulty")
        await job.done.wait()
    assert job.result == "failed"
    assert job.restored is None
    assert job.previous is None
    status = core.status()
    assert status["state"] == "failed"
    assert status["reason"] == job.failure.message  # type: ignore[union-attr]
    assert status["last_switch"]["reason"] == "out_of_memory"
    assert setup.containers() == []


async def test_a_failure_looking_line_from_a_server_that_keeps_loading_does_not_fail_the_switch(
    core: Core, setup: Setup
) -> None:
    with_fault(setup, "--fake-say 'open /sys/bus/pci: No such file or directory' --fake-load-seconds 4")
    with anyio.fail_after(20):
        job = await core.switch("faulty")
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    notes = [ln.text for ln in core.logbook.tail(200) if ln.kind == "note"]
    assert any("ignoring 'model_missing' line" in n for n in notes), notes
