"""The core against the in-memory STAND-IN engine (llm_mcp.runtime.memory): milliseconds per rule.

What only Docker can show (real containers, real llama-server, real outages) stays in
tests/integration; here every scheduling rule runs without Docker, HTTP or sleeps.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from llm_mcp.config.compose import profile_spec
from llm_mcp.config.models_conf import load_config
from llm_mcp.core.lifecycle import Core
from llm_mcp.runtime.base import ContainerInfo
from llm_mcp.runtime.memory import MemoryEngine, Script

ROOT = Path(__file__).resolve().parents[2]
PORT = 18080  # nothing listens: the stand-in probe answers for whichever container publishes it

PROFILES = """
[alpha]
name = Alpha
model = alpha.gguf

[beta]
name = Beta
model = beta.gguf
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class World:
    """One instance's models.conf, state dir and stand-in engine; cores started on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.instance = "m" + uuid.uuid4().hex[:10]
        self.engine = MemoryEngine()
        self.runtime = self.engine.runtime(self.instance)
        models = root / "models"
        models.mkdir(parents=True)
        for name in ("alpha.gguf", "beta.gguf"):
            (models / name).write_bytes(b"GGUF")
        (root / "compose").mkdir()
        shutil.copy(ROOT / "compose" / "compose.cpu.yaml", root / "compose" / "compose.yaml")
        self.config_path = root / "models.conf"
        self.write()

    def write(self, profiles: str = PROFILES, **defaults: object) -> None:
        """models.conf with timers small enough for millisecond tests (see config.py's ranges)."""
        values: dict[str, object] = {
            "instance": self.instance, "models_dir": self.root / "models", "port": PORT,
            "compose_file": "compose/compose.yaml", "image": "stand-in/llama-server:test",
            "stop_grace": 0.1, "stall_timeout": 5, "load_timeout": 60, "drain_timeout": 2,
            **defaults}
        head = "".join(f"{key} = {value}\n" for key, value in values.items())
        self.config_path.write_text(f"[defaults]\n{head}\n{profiles}", encoding="utf-8")

    def script(self, profile_id: str, script: Script) -> None:
        self.engine.script(profile_id, script)

    def containers(self) -> list[ContainerInfo]:
        return self.engine.containers()

    def running(self) -> list[str]:
        """The profiles of the running containers, as `docker ps` would list them."""
        return [c.profile for c in self.containers() if c.running]

    def start_by_hand(self, profile_id: str) -> ContainerInfo:
        """The container a previous daemon left behind (same spec and labels as the core's)."""
        config = load_config(self.config_path)
        spec, _ = profile_spec(config.profile(profile_id), config.instance)
        return self.runtime.create_and_start(spec)

    async def health(self) -> str:
        """What /health of the server on PORT says now (the stand-in probe, as the core asks)."""
        return (await self.engine.probe(f"http://127.0.0.1:{PORT}").health()).status

    def make_core(self) -> Core:
        path = self.config_path
        core = Core(load_config=lambda: load_config(path), runtime=self.runtime,
                    state_dir=self.root / "state", probe_factory=self.engine.probe,
                    health_interval=0.005, clock=self.engine.clock)
        core.engine.first_delay = 0.01  # reconnect quickly after a stand-in engine outage
        return core

    @asynccontextmanager
    async def core(self) -> AsyncIterator[Core]:
        core = self.make_core()
        async with anyio.create_task_group() as tg:
            await tg.start(core.run)
            try:
                yield core
            finally:
                tg.cancel_scope.cancel()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
async def core(world: World) -> AsyncIterator[Core]:
    async with world.core() as c:
        yield c


async def wait_until(predicate: Callable[[], object], timeout: float = 1.0) -> None:
    """Poll `predicate` (every 2 ms) until it is true; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.002)


async def ready(core: Core, profile_id: str) -> str:
    """Switch to `profile_id`, wait until it is ready; its container id."""
    job = await core.switch(profile_id)
    with anyio.fail_after(1):
        await job.done.wait()
    assert job.result == "ready", job.to_dict()
    assert core.container_id is not None
    return core.container_id
