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
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from llm_mcp.config.compose import LABEL_INSTANCE
from llm_mcp.config.models_conf import load_config
from llm_mcp.core.events import EventBus
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime

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
        done = subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=10)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if not docker_ok():
        pytest.fail("no Docker Engine answers: run the tests through .ci/run (it starts dockerd)")
    _need_image(FAKE_IMAGE)


def _need_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], check=False, capture_output=True).returncode:
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
            subprocess.run(["docker", "rm", "-f", *ids], check=False, capture_output=True)


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


# Two profiles that never conflict with anything: no GPU, and a port Docker picks.
SIDE_BY_SIDE = f"""
[side-a]
name = Side A
model = tiny-a.gguf
image = {FAKE_IMAGE}
port = auto
gpus = none

[side-b]
name = Side B
model = tiny-b.gguf
image = {FAKE_IMAGE}
port = auto
gpus = none
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


# ---- lifecycle test helpers ----------------------------------------------------------


def real_profiles(image: str = REAL_IMAGE, **extra: str) -> str:
    """Two profiles on the real llama-server (tiny-a, tiny-b), plus any `id = model` extras."""
    out = ""
    for profile_id, model in {"real-a": "tiny-a.gguf", "real-b": "tiny-b.gguf", **extra}.items():
        out += (f"\n[{profile_id}]\nname = {profile_id.replace('-', ' ').title()}\nmodel = {model}\n"
                f"image = {image}\nctx_size = 256\nn_gpu_layers = 0\n"
                "flags = --threads 1 --parallel 1 --no-warmup\n")
    return out


async def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(interval)


class ContainerCounter:
    """How many containers of one setup exist, watched two ways while a test runs.

    Docker's own create/destroy events give the exact count at every moment
    (`max_alive`); a poll of the container list every few milliseconds
    (`max_listed`) checks the same thing the way a user would see it.
    """

    def __init__(self, s: Setup) -> None:
        self.setup = s
        self.runtime = DockerRuntime(s.instance)
        self.alive: set[str] = set()
        self.max_alive = 0
        self.max_listed = 0
        self.polls = 0
        self.last_listed = 0
        self._stop = threading.Event()

    def _filters(self) -> dict[str, list[str]]:
        return {"label": [f"{LABEL_INSTANCE}={self.setup.instance}"]}

    def list(self) -> list[str]:
        return [c["Id"] for c in self.runtime.client.api.containers(all=True, filters=self._filters())]

    def _events(self, since: float) -> None:
        stream = self.runtime.client.api.events(
            decode=True, since=int(since), filters={**self._filters(), "type": "container"})

        def close_on_stop() -> None:
            self._stop.wait()
            stream.close()

        threading.Thread(target=close_on_stop, daemon=True).start()
        try:
            for event in stream:
                action = str(event.get("Action", "")).split(":")[0]
                cid = str(event.get("id") or event.get("Actor", {}).get("ID"))
                if action == "create":
                    self.alive.add(cid)
                elif action == "destroy":
                    self.alive.discard(cid)
                self.max_alive = max(self.max_alive, len(self.alive))
        except Exception:  # the stream closed under us: the stop path
            pass

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            n = len(self.list())
            self.last_listed = n
            self.max_listed = max(self.max_listed, n)
            self.polls += 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.alive = set(self.list())
        self.max_alive = self.max_listed = len(self.alive)
        since = time.time() - 1
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, self._events, since)
                tg.start_soon(anyio.to_thread.run_sync, self._poll)
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    self._stop.set()  # both threads end; the task group waits for them
        finally:
            self.runtime.client.close()


@pytest.fixture
async def counter(setup: Setup) -> AsyncIterator[ContainerCounter]:
    """Counts the setup's containers in the background for the whole test."""
    c = ContainerCounter(setup)
    async with anyio.create_task_group() as tg:
        await tg.start(c.run)
        yield c
        tg.cancel_scope.cancel()


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY="value" lines of an `.env` written by llm-mcp."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return out


# ---- two passes: most tests in parallel, the timing-sensitive ones alone -------------------

# Files whose assertions measure time against a bound (a status answered within 100 ms
# while a filter runs, an outage noticed within 2 s, a terminal redrawn in time): on two
# busy cores beside another worker they would measure the machine, not llm-mcp. They run
# in scripts/test.sh's second pass (-m serial), alone; everything else runs two at a time.
SERIAL_FILES = {
    "tests/monitor/test_monitor_terminal.py",
    "tests/logs/test_filters.py",
    "tests/daemon/test_http_api.py",
    "tests/daemon/test_daemon_process.py",
    "tests/integration/test_engines_many.py",
    "tests/integration/test_two_engines.py",
    "tests/integration/test_lifecycle_docker_outage.py",
    "tests/integration/test_lifecycle_adoption.py",
    "tests/integration/test_runtime_contract.py",
    "tests/preflight/test_list_models_speed.py",
    "tests/mcp/test_claude_code.py",
    "tests/mcp/test_inspector.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("::", 1)[0] in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)
