"""The one way clients talk to the daemon: JSON-RPC over its Unix socket.

Starts the daemon (detached) when nobody answers, and reconnects by itself
after a daemon restart, so a long-lived `serve` process never needs restarting.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

from llm_mcp import protocol
from llm_mcp.protocol import ProtocolError
from llm_mcp.util.locks import alive, read_holder
from llm_mcp.util.safe_files import open_private, private_dir, socket_problem
from llm_mcp.util.socket_hello import hello_sync

__all__ = ["DaemonClient", "DaemonUnavailable", "UnsafeSocket", "check_socket", "hello_sync"]

MAX_SPAWNS = 3  # daemons one connect may start when the one it waited for vanished


class DaemonUnavailable(Exception):
    """No daemon answers and none could be started."""


class UnsafeSocket(DaemonUnavailable):
    """The socket path holds something we must not talk to: another user's socket, a file, a link."""


def check_socket(path: Path) -> None:
    """Refuse a socket that is not ours before connecting (a missing one is fine: nothing to talk to)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    problem = socket_problem(path, st)
    if problem is not None:
        raise UnsafeSocket(problem)


class _Connection:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.pending: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self.events_send, self.events_recv = anyio.create_memory_object_stream[dict[str, Any]](10000)
        self.closed = anyio.Event()
        self.lock = anyio.Lock()

    async def read_loop(self) -> None:
        try:
            while True:
                line = await self.reader.receive_until(b"\n", 64 << 20)
                message = protocol_json(line)
                if message is None:
                    continue
                if "id" in message and message["id"] in self.pending:
                    event, slot = self.pending.pop(message["id"])
                    slot.append(message)
                    event.set()
                elif message.get("method") == "event":
                    with contextlib.suppress(anyio.WouldBlock):
                        self.events_send.send_nowait(message.get("params", {}))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                anyio.ClosedResourceError, anyio.DelimiterNotFound, OSError):
            pass
        finally:
            self.closed.set()
            for event, _ in self.pending.values():
                event.set()
            self.events_send.close()


def protocol_json(line: bytes) -> dict[str, Any] | None:
    import json

    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class DaemonClient:
    def __init__(
        self,
        socket_path: Path,
        *,
        config_path: Path | None = None,
        autostart: bool = True,
        start_timeout: float = 20.0,
        name: str = "client",
    ) -> None:
        self.socket_path = socket_path
        self.config_path = config_path
        self.autostart = autostart
        self.start_timeout = start_timeout
        self.name = name
        self._conn: _Connection | None = None
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._connect_lock = anyio.Lock()
        self.hello: dict[str, Any] = {}

    async def __aenter__(self) -> DaemonClient:
        self._exit = contextlib.AsyncExitStack()
        self._tg = await self._exit.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None and self._exit is not None
        if self._conn is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._conn.stream.aclose()
            self._conn.events_recv.close()  # unclosed, it warns (an error under pytest) when collected
        self._tg.cancel_scope.cancel()
        await self._exit.__aexit__(None, None, None)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.is_set()

    async def _connection(self) -> _Connection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.closed.is_set():
                return self._conn
            if self._conn is not None:  # the daemon went away: free the dead connection
                with contextlib.suppress(Exception):
                    await self._conn.stream.aclose()
                self._conn.events_recv.close()
            stream = await self._open()
            conn = _Connection(stream)
            assert self._tg is not None
            self._tg.start_soon(conn.read_loop)
            self._conn = conn
            self.hello = await self._request(conn, "hello", {"protocol": protocol.PROTOCOL_VERSION,
                                                             "client": self.name})
            return conn

    async def _open(self) -> anyio.abc.SocketStream:
        try:
            return await self._connect()
        except OSError:
            if not self.autostart:
                raise DaemonUnavailable(f"no daemon answers on {self.socket_path}; start one with "
                                        "`llm-mcp daemon`") from None
        deadline = time.monotonic() + self.start_timeout
        child, log_path = self._spawn()
        spawned = 1
        waiting_for: object = None
        saw_exit = False
        delay = 0.02
        while time.monotonic() < deadline:
            try:
                return await self._connect()
            except OSError:
                pass
            code = child.poll()
            if code not in (None, 0):
                raise DaemonUnavailable(f"the daemon could not start (exit {code}):\n"
                                        f"{_tail(log_path)}") from None
            if code == 0:
                # It found another daemon holding the socket's lock ("already running"): one
                # starting up, or one shutting down. Wait for that one, and start ours again
                # at once if it went away without ever answering.
                holder = read_holder(_lock_path(self.socket_path)).get("pid")
                if not saw_exit:
                    saw_exit = True
                    delay = 0.02  # the other daemon may be about to answer: look again at once
                waiting_for = holder or waiting_for
                if not alive(holder) and spawned < MAX_SPAWNS:
                    child, log_path = self._spawn()
                    spawned += 1
                    saw_exit = False
                    delay = 0.02
                    continue
            await anyio.sleep(delay)
            delay = min(0.2, delay * 1.5)
        detail = _tail(log_path)
        who = f" (waiting for the daemon pid {waiting_for}, which holds {_lock_path(self.socket_path)})" \
            if waiting_for else ""
        raise DaemonUnavailable(f"started a daemon but it did not answer on {self.socket_path} within "
                                f"{self.start_timeout:g}s{who}" + (f":\n{detail}" if detail else ""))

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        try:
            return spawn_daemon(self.socket_path, self.config_path)
        except OSError as exc:  # the state dir or daemon-start.log is unusable (a symlink, say)
            raise DaemonUnavailable(f"cannot start the daemon: {exc}") from None

    async def _connect(self) -> anyio.abc.SocketStream:
        """Connect, but only to a socket of our own user (raises UnsafeSocket otherwise)."""
        check_socket(self.socket_path)
        return await anyio.connect_unix(self.socket_path)

    async def _request(self, conn: _Connection, method: str, params: dict[str, Any]) -> Any:
        req_id = next(self._ids)
        done = anyio.Event()
        slot: list[dict[str, Any]] = []
        conn.pending[req_id] = (done, slot)
        try:
            async with conn.lock:
                await conn.stream.send(protocol.request(req_id, method, params))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            conn.pending.pop(req_id, None)
            conn.closed.set()
            raise ConnectionError("daemon connection lost") from None
        await done.wait()
        if not slot:
            raise ConnectionError("daemon connection lost")
        message = slot[0]
        if "error" in message:
            err = message["error"]
            raise ProtocolError(int(err.get("code", protocol.INTERNAL_ERROR)), str(err.get("message")),
                                err.get("data") or {})
        return message.get("result")

    async def call(self, method: str, **params: Any) -> Any:
        """Call a daemon method; a dead connection (daemon restarted) is re-opened once."""
        for attempt in (1, 2):
            try:
                # A daemon shutting down may accept and then hang up before `hello`: retry too.
                conn = await self._connection()
                return await self._request(conn, method, params)
            except ConnectionError:
                if attempt == 2 or (method in ("switch", "stop") and params.get("wait")):
                    raise DaemonUnavailable("the daemon went away during the call") from None
        raise AssertionError("unreachable")

    async def subscribe(self, topics: list[str],
                        capacity: int = 2000) -> MemoryObjectReceiveStream[dict[str, Any]]:
        """Subscribe; every event published after this returns arrives on the stream."""
        conn = await self._connection()
        await self._request(conn, "subscribe", {"topics": topics, "capacity": capacity})
        return conn.events_recv

    async def events(self, topics: list[str], capacity: int = 2000) -> AsyncIterator[dict[str, Any]]:
        """Subscribe and yield events until the connection drops (then it returns)."""
        stream = await self.subscribe(topics, capacity)
        try:
            async for event in stream:
                yield event
        finally:
            stream.close()


def spawn_daemon(socket_path: Path, config_path: Path | None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `llm-mcp daemon` detached from this process (it outlives every client)."""
    from llm_mcp.config.paths import state_dir

    state = private_dir(state_dir())
    log_path = state / "daemon-start.log"
    argv = [sys.executable, "-m", "llm_mcp", "daemon", "--socket", str(socket_path)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    with open_private(log_path, "a", binary=True) as log_file:  # 0600, never through a symlink
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=log_file, start_new_session=True, close_fds=True,
                                 env=os.environ.copy())
    # Reap it whenever it exits (a daemon that lost the lock race exits at once).
    threading.Thread(target=child.wait, name="reap-daemon", daemon=True).start()
    return child, log_path


def _lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
