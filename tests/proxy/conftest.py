"""The endpoint served by a real in-process daemon (socket server, scheduler, Docker) on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from llm_mcp.daemon.proxy import serve_proxy
from llm_mcp.daemon.server import Daemon
from tests.conftest import FAKE_IMAGE, Setup
from tests.daemons import in_process_daemon

PROXY_FAKES = f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}
aliases = gpt-a
flags = --fake-tps 200

[fake-b]
name = Fake B
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 0.5 --fake-tps 200

[fake-oom]
name = Fake OOM
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-scenario oom
"""


@dataclass
class Endpoint:
    daemon: Daemon
    url: str  # http://127.0.0.1:PORT
    port: int

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serving(setup: Setup, host: str = "127.0.0.1",
                  samplers: Callable[[Daemon], Any] | None = None) -> AsyncIterator[Endpoint]:
    """The daemon, and the endpoint started as server.py starts it; `samplers`: the daemon's GPU sampling."""
    async with in_process_daemon(setup) as daemon, anyio.create_task_group() as tg:
        if samplers is not None:
            daemon.samplers = samplers(daemon)
        port = await tg.start(serve_proxy, daemon, host, 0)
        try:
            yield Endpoint(daemon, f"http://127.0.0.1:{port}", port)
        finally:
            tg.cancel_scope.cancel()


@pytest.fixture
async def endpoint(setup: Setup) -> AsyncIterator[Endpoint]:
    setup.write(PROXY_FAKES)
    async with serving(setup) as ep:
        yield ep
