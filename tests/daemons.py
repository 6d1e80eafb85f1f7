"""Helpers for tests that run real daemons: start them, talk to them raw, and always stop them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from llm_mcp.daemon.server import Daemon
from tests.conftest import FAKE_IMAGE, Setup, make_core

# A load too slow to finish during a test, and one that crashes: for busy/failure paths.
SLOW_AND_BROKEN = f"""
[slow]
name = Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 30

[broken]
name = Broken
model = tiny-b.gguf
image = {FAKE_IMAGE}
flags = --fake-scenario crash-load
"""


def socket_of(s: Setup) -> Path:
    return Path(s.env()["LLM_MCP_SOCKET"])


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def cli(s: Setup, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """`llm-mcp ARGS` as a user runs it, against the setup's config, socket and state dir."""
    return subprocess.run([sys.executable, "-m", "llm_mcp", *args], env=env or s.env(), text=True,
                          capture_output=True, timeout=timeout, check=False)


class Daemons:
    """Starts `llm-mcp daemon` for a setup; at teardown stops every daemon on its socket."""

    def __init__(self, s: Setup) -> None:
        self.setup = s
        self.socket = socket_of(s)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, wait: bool = True, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        with (self.setup.root / f"daemon-{len(self.procs)}.err").open("wb") as log:
            argv = [sys.executable, "-m", "llm_mcp", "daemon", "--socket", str(self.socket), *args]
            proc = subprocess.Popen(argv, env=env or self.setup.env(), stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(proc)
        if wait:
            deadline = time.monotonic() + 30
            while not answers(self.socket):
                if proc.poll() is not None:
                    raise AssertionError(f"daemon exited {proc.returncode}: {self.stderr(proc)}")
                if time.monotonic() > deadline:
                    raise AssertionError("daemon did not answer within 30 s")
                time.sleep(0.02)
        return proc

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc)
        return (self.setup.root / f"daemon-{index}.err").read_text(errors="replace")

    def pids(self) -> list[int]:
        """Every live `llm-mcp daemon` process on this setup's socket (started by us or a client)."""
        out = subprocess.run(["pgrep", "-f", f"llm_mcp daemon --socket {self.socket}"], capture_output=True,
                             text=True, check=False).stdout
        pids = [int(p) for p in out.split()]
        return [p for p in pids if _is_daemon(p)]

    def cleanup(self) -> None:
        for pid in self.pids():
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids():
            _signal(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def _is_daemon(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


# ---- in-process daemon and raw connections ------------------------------------------------


@asynccontextmanager
async def in_process_daemon(s: Setup) -> AsyncIterator[Daemon]:
    """The real Daemon (socket server and lifecycle core) in the test's own event loop."""
    daemon = Daemon(make_core(s), socket_of(s), None, s.config_path)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.serve)
        try:
            yield daemon
        finally:
            # Hang up first and let the daemon see it: cancelling a connection's read at the
            # moment its EOF arrives trips an anyio race (set_result on a cancelled future).
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                for raw in [r for r in Raw.opened if r.path == daemon.socket_path]:
                    await raw.aclose()
                while daemon.clients:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


class Raw:
    """A JSON-RPC connection with nothing in between: bytes in, decoded lines out."""

    opened: ClassVar[list[Raw]] = []

    def __init__(self, stream: anyio.abc.SocketStream, path: Path) -> None:
        self.stream = stream
        self.path = path
        self.reader = BufferedByteReceiveStream(stream)
        self._ids = 1000

    @classmethod
    async def open(cls, path: Path) -> Raw:
        raw = cls(await anyio.connect_unix(path), path)
        cls.opened.append(raw)
        return raw

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> dict[str, Any]:
        line = await self.reader.receive_until(b"\n", 64 << 20)
        value = json.loads(line)
        assert isinstance(value, dict), value
        return value

    async def reply_to(self, req_id: int) -> dict[str, Any]:
        """The response with this id (responses to concurrent lines may arrive in any order)."""
        while True:
            message = await self.receive()
            if message.get("id") == req_id:
                return message

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._ids += 1
        req_id = self._ids
        await self.send(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                                    "params": params or {}}).encode() + b"\n")
        return await self.reply_to(req_id)

    async def aclose(self) -> None:
        if self in Raw.opened:
            Raw.opened.remove(self)
        await self.stream.aclose()
