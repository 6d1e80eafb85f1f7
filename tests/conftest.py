"""Shared fixtures: real Docker, generated tiny models, per-test configs and cores.

Every test gets its own `instance` (a label and container name of its own), so
tests never see each other's containers, and any container a test leaves
behind is removed by the fixture.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from llm_mcp.compose import LABEL_INSTANCE
from llm_mcp.config import load_config
from llm_mcp.docker_runtime import DockerRuntime
from llm_mcp.events import EventBus
from llm_mcp.lifecycle import Core

ROOT = Path(__file__).resolve().parent.parent
FAKE_IMAGE = "llm-mcp-test/fake-llama-server:latest"
REAL_IMAGE = "llm-mcp-test/llama-server:cpu"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if not docker_ok():
        pytest.fail("no Docker Engine answers: run the tests through .ci/run (it starts dockerd)")
    _need_image(FAKE_IMAGE)


def _need_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        pytest.fail(f"test image {image} is missing: run images/build.sh (.ci/run does)")


@pytest.fixture(scope="session")
def real_image(docker_engine: None) -> str:
    _need_image(REAL_IMAGE)
    return REAL_IMAGE


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llm_mcp.demo.tiny_model import main as make_models

    directory = tmp_path_factory.mktemp("models")
    make_models([str(directory)])
    return directory


class Setup:
    """One isolated llm-mcp configuration: models.conf, compose file, state dir."""

    def __init__(self, root: Path, models: Path) -> None:
        self.root = root
        self.models = models
        self.instance = "t" + uuid.uuid4().hex[:10]
        self.port = free_port()
        self.state_dir = root / "state"
        (root / "compose").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "compose" / "compose.cpu.yaml", root / "compose" / "compose.yaml")
        self.config_path = root / "models.conf"

    def write(self, profiles: str, defaults: str = "") -> Path:
        self.config_path.write_text(
            f"[defaults]\ninstance = {self.instance}\nmodels_dir = {self.models}\n"
            f"port = {self.port}\ncompose_file = compose/compose.yaml\nstop_grace = 2\n"
            f"stall_timeout = 20\nload_timeout = 60\ndrain_timeout = 3\n{defaults}\n{profiles}",
            encoding="utf-8",
        )
        return self.config_path

    def env(self) -> dict[str, str]:
        return {**os.environ, "LLM_MCP_CONFIG": str(self.config_path),
                "LLM_MCP_STATE_DIR": str(self.state_dir),
                "LLM_MCP_SOCKET": str(self.root / "llm-mcp.sock")}

    def containers(self) -> list[str]:
        out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_INSTANCE}={self.instance}"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    def cleanup(self) -> None:
        ids = self.containers()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


FAKE_PROFILES = f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}
speed = 100
flags = --fake-tps 100

[fake-b]
name = Fake B
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 0.5
"""


@pytest.fixture
def setup(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[Setup]:
    s = Setup(tmp_path, models_dir)
    s.write(FAKE_PROFILES)
    yield s
    s.cleanup()


CoreFactory = Callable[[], "anyio.abc.AsyncContextManager[Core]"]


def make_core(s: Setup, bus: EventBus | None = None) -> Core:
    config = s.config_path
    return Core(load_config=lambda: load_config(config), runtime=DockerRuntime(s.instance),
                state_dir=s.state_dir, bus=bus)


async def run_core(core: Core, tg: anyio.abc.TaskGroup) -> Core:
    await tg.start(core.run)
    return core


@pytest.fixture
async def core(setup: Setup) -> AsyncIterator[Core]:
    c = make_core(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(c.run)
        yield c
        tg.cancel_scope.cancel()
