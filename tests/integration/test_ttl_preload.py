"""ttl and preload on real containers (the fake llama-server image: what matters is Docker's side)."""

from __future__ import annotations

import time

import anyio
import pytest

from tests.conftest import FAKE_PROFILES, Setup, make_core, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def _running(setup: Setup) -> int:
    return len(setup.containers())


async def test_a_model_idle_for_its_ttl_is_unloaded_and_its_container_removed(setup: Setup) -> None:
    setup.write(FAKE_PROFILES.replace("name = Fake A\n", "name = Fake A\nttl = 2\n"))
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        job = await core.ensure("fake-a")
        with anyio.fail_after(30):
            await job.done.wait()
        assert job.result == "ready", job.to_dict()
        ready_at = time.monotonic()
        entry = core.status()["models"][0]
        assert entry["ttl"]["seconds"] == 2 and entry["ttl"]["remaining"] <= 2
        assert _running(setup) == 1
        with core.requests.serving("fake-a"):  # a request in flight holds it past its ttl
            await anyio.sleep(3)
            assert _running(setup) == 1 and core.status()["state"] == "ready"
        await wait_until(lambda: _running(setup) == 0 and core.status()["state"] == "stopped", 15)
        idle = time.monotonic() - ready_at - 3
        assert 1.5 <= idle <= 8, idle  # the ttl counts from the last request's end
        status = core.status()
        assert status["state"] == "stopped" and status["reason_code"] == "ttl_expired", status
        assert not (setup.root / "compose" / "fake-a.env").exists()
        tg.cancel_scope.cancel()


async def test_preload_starts_the_model_when_the_core_starts_and_a_conflicting_one_is_skipped(
    setup: Setup
) -> None:
    # Both preload, both on the default port: they conflict; the first is loaded, the second skipped.
    setup.write(FAKE_PROFILES.replace("name = Fake A\n", "name = Fake A\npreload = true\n")
                .replace("name = Fake B\n", "name = Fake B\npreload = true\n"))
    core = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        await wait_until(lambda: core.status()["state"] == "ready", 30)
        status = core.status()
        assert [m["id"] for m in status["models"]] == ["fake-a"] and status["models"][0]["preload"]
        assert _running(setup) == 1
        notes = " ".join(ln.text for ln in core.logbook.tail(50))
        assert "preload of Fake B skipped" in notes and "fake-a" in notes
        tg.cancel_scope.cancel()
