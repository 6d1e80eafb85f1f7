"""MCP test fixtures: a real daemon (started the way clients start it) over real Docker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from llm_mcp.clients.client import DaemonClient
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, ROOT, Setup

LLM_MCP = ROOT / ".venv" / "bin" / "llm-mcp"
SLOW_SECONDS = 4  # fake-slow's load time, and the estimate its load history gives

MCP_PROFILES = FAKE_PROFILES + f"""
[fake-slow]
name = Fake Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds {SLOW_SECONDS}

[fake-crash]
name = Fake Crash
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-scenario crash-load --fake-load-seconds 1
"""

ENV_KEYS = ("LLM_MCP_CONFIG", "LLM_MCP_STATE_DIR", "LLM_MCP_SOCKET")


def serve_env(setup: Setup) -> dict[str, str]:
    """Only llm-mcp's own variables: the rest is the MCP SDK's default environment, as under
    Claude Code."""
    full = setup.env()
    return {key: full[key] for key in ENV_KEYS}


def socket_of(setup: Setup) -> Path:
    return Path(setup.env()["LLM_MCP_SOCKET"])


def daemon_pid(setup: Setup) -> int | None:
    """The live daemon of this setup (the pid its lock file names), else None.

    Reads /proc rather than probing the lock: a probe could make a starting daemon
    believe another one holds it.
    """
    lock = socket_of(setup).with_name(socket_of(setup).name + ".lock")
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        return None
    proc = Path("/proc") / text
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        zombie = "\nState:\tZ" in (proc / "status").read_text()
    except OSError:
        return None
    if zombie or b"daemon" not in cmdline or str(socket_of(setup)).encode() not in cmdline:
        return None
    return int(text)


async def stop_daemon(setup: Setup, timeout: float = 15) -> None:
    """SIGTERM whatever daemon serves this setup and wait until its lock is free."""
    with anyio.fail_after(timeout):
        while (pid := daemon_pid(setup)) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            await anyio.sleep(0.05)


def seed_load_history(setup: Setup, **seconds: float) -> None:
    """What past loads took: the daemon's estimate (and so the progress percentage) comes from it."""
    setup.state_dir.mkdir(parents=True, exist_ok=True)
    path = setup.state_dir / f"load-history-{setup.instance}.json"
    path.write_text(json.dumps({k.replace("_", "-"): [v] for k, v in seconds.items()}), encoding="utf-8")


@pytest.fixture
def mcp_setup(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Setup:
    """The setup with the MCP profiles; this process's clients find (and start) its daemon."""
    setup.write(MCP_PROFILES)
    seed_load_history(setup, fake_slow=SLOW_SECONDS)
    for key, value in serve_env(setup).items():
        monkeypatch.setenv(key, value)
    return setup


@pytest.fixture
async def daemon(mcp_setup: Setup) -> AsyncIterator[DaemonClient]:
    """A running daemon (autostarted, detached, like any client starts it) and a client of it.

    Teardown stops every daemon that served the setup (tests restart it) before the
    setup fixture removes the containers.
    """
    try:
        async with DaemonClient(socket_of(mcp_setup), config_path=mcp_setup.config_path,
                                name="test") as client:
            with anyio.fail_after(30):
                await client.call("status", gpu=False)
            yield client
    finally:
        await stop_daemon(mcp_setup)


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    """legacy: the initialize handshake at 2025-11-25 (Claude Code's); auto: the newest protocol."""
    return str(request.param)
