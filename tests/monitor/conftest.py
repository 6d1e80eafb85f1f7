"""Fixtures for the monitor tests: a live daemon on its own socket, and Pilot helpers."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from textual.pilot import Pilot

from llm_mcp.clients.client import DaemonClient, DaemonUnavailable
from tests.conftest import FAKE_IMAGE, REAL_IMAGE, Setup


def real_monitor_profiles(image: str = REAL_IMAGE) -> str:
    """Three production profiles (the third fails: a truncated model) and one bench profile."""
    out = ""
    for pid, name, model, extra in (
        ("real-a", "Tiny A", "tiny-a.gguf", "speed = 50\n"),
        ("real-b", "Tiny B", "tiny-b.gguf", ""),
        ("real-broken", "Tiny Broken", "corrupt.gguf", ""),
        ("real-a-bench", "Tiny A bench", "tiny-a.gguf", "bench = true\n"),
    ):
        out += (f"\n[{pid}]\nname = {name}\nmodel = {model}\nimage = {image}\nctx_size = 256\n"
                f"n_gpu_layers = 0\nflags = --threads 1 --parallel 1\n{extra}")
    return out


def fake_monitor_profiles() -> str:
    return (f"\n[fake-a]\nname = Fake A\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\nspeed = 100\n"
            f"flags = --fake-load-seconds 1\n"
            f"\n[fake-b]\nname = Fake B\nmodel = tiny-b.gguf\nimage = {FAKE_IMAGE}\n"
            f"flags = --fake-load-seconds 1\n"
            f"\n[fake-oom]\nname = Fake OOM\nmodel = tiny-b.gguf\nimage = {FAKE_IMAGE}\n"
            f"flags = --fake-load-seconds 1 --fake-scenario oom\n")


class LiveDaemon:
    """One setup whose daemon the monitor under test starts itself (autostart)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.socket = setup.root / "d.sock"
        self.config = setup.config_path

    def client(self, name: str = "monitor-test", autostart: bool = True) -> DaemonClient:
        return DaemonClient(self.socket, config_path=self.config, name=name, autostart=autostart)

    def pid(self) -> int | None:
        async def ask() -> int | None:
            try:
                async with self.client("fixture", autostart=False) as c:
                    await c.call("hello")
                    return int(c.hello["pid"])
            except (DaemonUnavailable, ConnectionError, OSError):
                return None

        return anyio.run(ask)

    def terminate(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _live(root: Path, models: Path, profiles: str) -> Iterator[LiveDaemon]:
    setup = Setup(root, models)
    setup.write(profiles)
    live = LiveDaemon(setup)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_MCP_STATE_DIR", str(setup.state_dir))
        mp.setenv("LLM_MCP_CONFIG", str(setup.config_path))
        mp.setenv("LLM_MCP_SOCKET", str(live.socket))
        try:
            yield live
        finally:
            live.terminate()
            setup.cleanup()


@pytest.fixture(scope="module")
def real_live(tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
              real_image: str) -> Iterator[LiveDaemon]:
    """A daemon (started by the first monitor that connects) with the real llama-server profiles."""
    yield from _live(tmp_path_factory.mktemp("monreal"), models_dir, real_monitor_profiles(real_image))


@pytest.fixture
def fake_live(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[LiveDaemon]:
    """A daemon per test with the fake llama-server (fast loads)."""
    yield from _live(tmp_path, models_dir, fake_monitor_profiles())


def several_monitor_profiles() -> str:
    """Two fake profiles that run side by side (no GPU, ports Docker picks) and one that runs alone."""
    out = ""
    for pid, name, model, extra in (("fake-a", "Fake A", "tiny-a.gguf", ""),
                                    ("fake-b", "Fake B", "tiny-b.gguf", ""),
                                    ("fake-big", "Fake Big", "tiny-b.gguf", "exclusive = true\n")):
        out += (f"\n[{pid}]\nname = {name}\nmodel = {model}\nimage = {FAKE_IMAGE}\ngpus = none\nport = auto\n"
                f"flags = --fake-load-seconds 1\n{extra}")
    return out


@pytest.fixture
def several_live(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[LiveDaemon]:
    """A daemon per test whose fake-a and fake-b run at once; fake-big replaces both."""
    yield from _live(tmp_path, models_dir, several_monitor_profiles())


@pytest.fixture
def fit_live(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[LiveDaemon]:
    """A daemon per test whose `huge` profile needs more RAM than this machine has (a header-only
    model, so nothing big is on disk); the daemon's own pre-flight refuses it."""
    from llm_mcp.demo.shaped_model import write_header_only_model
    from tests.preflight.test_switch_preflight import HOST_SHAPE

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(models_dir / "tiny-a.gguf", models / "tiny-a.gguf")
    write_header_only_model(models / "host-37g.gguf", HOST_SHAPE, n_vocab=32000)
    profiles = (f"\n[fake-a]\nname = Fake A\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                f"flags = --fake-load-seconds 1\n"
                f"\n[huge]\nname = Huge\nmodel = host-37g.gguf\nimage = {FAKE_IMAGE}\nctx_size = 4096\n"
                f"n_gpu_layers = 0\n")
    yield from _live(tmp_path / "root", models, profiles)


async def wait_for(pilot: Pilot[None], predicate: Callable[[], object], timeout: float,
                   what: str = "") -> None:
    """Let the app run until `predicate` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            state = getattr(getattr(pilot.app, "model", None), "status", None)
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}; "
                                 f"status: {state}")
        await pilot.pause(0.05)
