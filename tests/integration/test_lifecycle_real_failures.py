"""Every failure of the real llama-server ends `failed` with its reason, and the previous model returns."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import anyio
import pytest

from llm_mcp.core.scheduler import Core, Job
from tests.conftest import FAKE_IMAGE, ContainerCounter, Setup, free_port, real_profiles

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]


async def ready_on(core: Core, profile_id: str) -> Job:
    with anyio.fail_after(30):
        job = await core.switch(profile_id)
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    return job


async def fail_and_restore(core: Core, profile_id: str) -> Job:
    """Switch to a broken profile from a ready real-a; the job fails and real-a comes back."""
    await ready_on(core, "real-a")
    with anyio.fail_after(20):
        job = await core.switch(profile_id)
        await job.done.wait()
    assert job.result == "failed", job.to_dict()
    assert job.restored is True, job.to_dict()
    status = core.status()
    assert status["state"] == "ready"
    assert status["profile"]["id"] == "real-a"
    assert status["health"] == "ok"
    assert status["last_switch"]["id"] == job.id
    assert status["last_switch"]["reason"] == job.failure.reason  # type: ignore[union-attr]
    # The failure itself was seen within seconds, before the restore began.
    failed_at = next(p["at"] for p in job.phases if p["phase"] == "restoring_previous")
    assert failed_at < 5.0, job.phases
    return job


def has_line(job: Job, needle: str) -> bool:
    return any(needle in line for line in job.log_lines)


@pytest.mark.parametrize(
    ("model", "reason", "telling_line"),
    [
        ("no-such-model.gguf", "model_missing", "failed to open GGUF file"),
        ("corrupt.gguf", "model_corrupt", "data is not within the file bounds"),
        ("not-gguf.gguf", "model_corrupt", "invalid magic characters"),
        ("empty.gguf", "model_corrupt", "failed to read magic"),
    ],
)
async def test_a_broken_model_file_fails_with_its_reason_and_restores_the_previous_model(
    setup: Setup, real_image: str, counter: ContainerCounter, core: Core,
    model: str, reason: str, telling_line: str,
) -> None:
    setup.write(real_profiles(real_image, broken=model))
    job = await fail_and_restore(core, "broken")
    assert job.failure is not None
    assert job.failure.reason == reason, job.to_dict()
    assert has_line(job, telling_line), job.log_lines
    assert has_line(job, "exiting due to model loading error"), job.log_lines
    assert counter.max_alive == 1
    assert len(counter.list()) == 1


async def test_an_unknown_flag_fails_as_bad_argument_and_restores_the_previous_model(
    setup: Setup, real_image: str, counter: ContainerCounter, core: Core
) -> None:
    setup.write(real_profiles(real_image) + "\n[bogus]\nmodel = tiny-b.gguf\n"
                f"image = {real_image}\nflags = --bogus-flag\n")
    job = await fail_and_restore(core, "bogus")
    assert job.failure is not None
    assert job.failure.reason == "bad_argument", job.to_dict()
    assert has_line(job, "invalid argument: --bogus-flag"), job.log_lines
    assert counter.max_alive == 1


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A host port held by a plain listening socket (not a container)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_a_port_held_by_another_process_fails_as_port_in_use_and_restores(
    setup: Setup, real_image: str, counter: ContainerCounter, core: Core, listening_port: int
) -> None:
    setup.write(real_profiles(real_image) + f"\n[taken]\nmodel = tiny-b.gguf\nimage = {real_image}\n"
                f"port = {listening_port}\n")
    job = await fail_and_restore(core, "taken")
    assert job.failure is not None
    assert job.failure.reason == "port_in_use", job.to_dict()
    assert has_line(job, "address already in use") or has_line(job, "already allocated"), job.log_lines
    assert counter.max_alive == 1


@pytest.fixture
def foreign_container() -> Iterator[int]:
    """A container llm-mcp did not create, publishing a host port."""
    port = free_port()
    name = f"llm-mcp-foreign-{port}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                    "--entrypoint", "sleep", FAKE_IMAGE, "600"], check=True, capture_output=True)
    try:
        yield port
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


async def test_a_port_published_by_a_foreign_container_fails_as_port_in_use_and_restores(
    setup: Setup, real_image: str, core: Core, foreign_container: int
) -> None:
    setup.write(real_profiles(real_image) + f"\n[taken]\nmodel = tiny-b.gguf\nimage = {real_image}\n"
                f"port = {foreign_container}\n")
    job = await fail_and_restore(core, "taken")
    assert job.failure is not None
    assert job.failure.reason == "port_in_use", job.to_dict()
    assert has_line(job, "already allocated") or has_line(job, "address already in use"), job.log_lines
    # The foreign container is untouched.
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}",
                          f"llm-mcp-foreign-{foreign_container}"],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "true"


async def test_without_rollback_a_failure_leaves_the_state_failed_and_no_container(
    setup: Setup, real_image: str, counter: ContainerCounter, core: Core
) -> None:
    setup.write(real_profiles(real_image, broken="empty.gguf"))
    await ready_on(core, "real-a")
    with anyio.fail_after(20):
        job = await core.switch("broken", rollback=False)
        await job.done.wait()
    assert job.result == "failed"
    assert job.restored is None  # not attempted
    status = core.status()
    assert status["state"] == "failed"
    assert status["reason"] == job.failure.message  # type: ignore[union-attr]
    assert status["hint"]
    assert counter.list() == []
