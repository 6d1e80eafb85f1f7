"""The gate's wait for turns (proxy_gate.Gate, Core.turn_left) against a scheduler STAND-IN.

The rule itself (how long a turn is) is tested on the real core in tests/core/test_requests.py;
here: what a waiting request does meanwhile. No Docker: the stand-in says whose turn it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from llm_mcp.config.models_conf import Config, load_config
from llm_mcp.config.proxy_conf import ProxySettings
from llm_mcp.core.jobs import Job
from llm_mcp.core.requests import RequestBook
from llm_mcp.daemon.proxy_gate import Gate

pytestmark = pytest.mark.anyio


class TurnsStandIn:
    """A scheduler whose running model keeps its turn until `turn_ends`; a load is instant."""

    def __init__(self, config: Config, turn_seconds: float) -> None:
        self._config = config
        self.requests = RequestBook()
        self.turn_ends = time.monotonic() + turn_seconds
        self.loaded: list[tuple[str, float]] = []  # (model, when ensure was called)

    def config(self) -> Config:
        return self._config

    def status(self) -> dict[str, Any]:
        return {}

    def ready_endpoint(self, model: str) -> str | None:
        return "http://127.0.0.1:9" if any(m == model for m, _ in self.loaded) else None

    def turn_left(self, model: str) -> float:
        return max(0.0, self.turn_ends - time.monotonic())

    async def ensure(self, model: str, *, force: bool = False, rollback: bool = True) -> Job:
        self.loaded.append((model, time.monotonic()))
        job = Job(kind="switch", profile=model, profile_name=model, force=False, rollback=True,
                  previous=None, estimate=None)
        job.result = "ready"
        job.done.set()
        return job


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    path = tmp_path / "models.conf"
    path.write_text(f"[defaults]\nmodels_dir = {tmp_path}\n[b]\nmodel = b.gguf\n", encoding="utf-8")
    return load_config(path)


async def test_a_load_waits_for_the_turn_and_the_wait_does_not_count_against_the_queue_timeout(
    config: Config,
) -> None:
    core = TurnsStandIn(config, turn_seconds=1.5)
    gate = Gate(core, lambda: ProxySettings(queue_timeout=1))  # shorter than the turn
    heard: list[float] = []

    async def progress(job: Job | None, waited: float) -> None:
        heard.append(waited)

    began = time.monotonic()
    with anyio.fail_after(5):
        endpoint = await gate.wait_ready(gate.resolve("b"), progress)
    assert endpoint == "http://127.0.0.1:9"
    assert core.loaded and core.loaded[0][1] >= core.turn_ends - 0.01  # not before the turn ended
    assert time.monotonic() - began >= 1.4
    assert heard and all(w >= 0.9 for w in heard)  # a loading-state stream heard it waited
    assert core.requests.queued("b") == 0  # counted as queued while it waited, not after


async def test_no_turn_means_no_wait(config: Config) -> None:
    core = TurnsStandIn(config, turn_seconds=0)
    gate = Gate(core, ProxySettings)
    began = time.monotonic()
    with anyio.fail_after(5):
        await gate.wait_ready(gate.resolve("b"))
    assert time.monotonic() - began < 0.5
