"""The lifecycle daemon: one per socket, shared by every client, outliving all of them."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from llm_mcp import __version__, protocol
from llm_mcp.config import Config, load_config
from llm_mcp.events import TOPICS, Subscription
from llm_mcp.lifecycle import Core, Job, SwitchError, SwitchRefused
from llm_mcp.protocol import ProtocolError, param

log = logging.getLogger("llm_mcp.daemon")


class AlreadyRunning(Exception):
    pass


class DaemonLock:
    """An flock beside the socket: the one daemon per socket rule."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path.with_name(socket_path.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(f"a daemon already holds {self.path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def holder(self) -> int | None:
        """The pid written by the daemon holding the lock, if readable."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Samplers:
    """GPU and system sampling loops; they run only while someone subscribes."""

    def __init__(self, core: Core, gpu: Any, system: Any, interval: float = 1.0) -> None:
        self.core = core
        self.gpu = gpu
        self.system = system
        self.interval = interval
        self.last_gpu: dict[str, Any] | None = None
        self.last_system: dict[str, Any] | None = None
        self._wanted = anyio.Event()
        self._threads = anyio.CapacityLimiter(2)

    def wake(self) -> None:
        self._wanted.set()

    def _interested(self) -> bool:
        return self.core.bus.wanted("gpu", "system")

    async def gpu_now(self) -> dict[str, Any]:
        if self.last_gpu is None or time.time() - float(self.last_gpu.get("wall", 0)) > 2:
            snapshot = await anyio.to_thread.run_sync(self.gpu.sample, limiter=self._threads)
            self.last_gpu = {**snapshot.to_dict(), "wall": time.time()}
        return self.last_gpu

    async def run(self) -> None:
        while True:
            if not self._interested():
                self._wanted = anyio.Event()
                with anyio.move_on_after(5):
                    await self._wanted.wait()
                continue
            started = time.monotonic()
            snapshot = await anyio.to_thread.run_sync(self.gpu.sample, limiter=self._threads)
            self.last_gpu = {**snapshot.to_dict(), "wall": time.time()}
            self.core.bus.publish("gpu", self.last_gpu)
            # On the loop's own thread: psutil keeps CPU-percent state per thread, and pooled
            # worker threads would each report their first sample as N/A. It reads /proc: fast.
            system = self.system.sample()
            self.last_system = {**system.to_dict(), "container": await self._container_stats()}
            self.core.bus.publish("system", self.last_system)
            await anyio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    async def _container_stats(self) -> dict[str, Any] | None:
        from llm_mcp.system import container_stats_from_docker

        container_id = self.core.container_id
        stats_fn = getattr(self.core.runtime, "stats", None)
        if container_id is None or stats_fn is None:
            return None
        raw = await anyio.to_thread.run_sync(stats_fn, container_id, limiter=self._threads)
        return None if raw is None else container_stats_from_docker(raw).to_dict()


class Daemon:
    def __init__(self, core: Core, socket_path: Path, samplers: Samplers | None = None,
                 config_path: Path | None = None) -> None:
        self.core = core
        self.socket_path = socket_path
        self.samplers = samplers
        self.config_path = config_path
        self.started_at = time.time()
        self.clients = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # stale: we hold the lock, so nobody else serves it
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            listener = await anyio.create_unix_listener(self.socket_path)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        async with anyio.create_task_group() as tg:
            await tg.start(self.core.run)
            if self.samplers is not None:
                tg.start_soon(self.samplers.run)
            tg.start_soon(listener.serve, self._connection)
            log.info("daemon %s listening on %s", os.getpid(), self.socket_path)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()
                await listener.aclose()

    # ---- one connection --------------------------------------------------------

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        self.clients += 1
        reader = BufferedByteReceiveStream(stream)
        write_lock = anyio.Lock()
        subscription: list[Subscription] = []

        async def send(data: bytes) -> None:
            async with write_lock:
                await stream.send(data)

        try:
            async with anyio.create_task_group() as tg:
                while True:
                    try:
                        line = await reader.receive_until(b"\n", protocol.MAX_LINE_BYTES)
                    except anyio.DelimiterNotFound:
                        err = ProtocolError(protocol.INVALID_REQUEST,
                                            f"line longer than {protocol.MAX_LINE_BYTES} bytes; closing")
                        await send(protocol.error(None, err))
                        break
                    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                            anyio.ClosedResourceError):
                        break
                    if not line.strip():
                        continue
                    tg.start_soon(self._handle_line, line, send, subscription, tg)
                tg.cancel_scope.cancel()
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client went away (inside the task group these arrive as a group)
        except* Exception:
            log.exception("connection handler failed")  # one client must never take the daemon down
        finally:
            for sub in subscription:
                self.core.bus.unsubscribe(sub)
            self.clients -= 1
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _handle_line(self, line: bytes, send: Callable[[bytes], Any],
                           subscription: list[Subscription], tg: anyio.abc.TaskGroup) -> None:
        req_id: Any = None
        try:
            req = protocol.parse_request(line)
            req_id = req.id
            if req.method == "subscribe":
                value = self._subscribe(req.params, send, subscription, tg)
            elif req.method == "unsubscribe":
                for sub in subscription:
                    self.core.bus.unsubscribe(sub)
                subscription.clear()
                value = {"subscribed": []}
            else:
                value = await self.dispatch(req.method, req.params)
            if req.id is not None:
                await send(protocol.result(req.id, value))
        except ProtocolError as err:
            await _quiet(send(protocol.error(req_id, err)))
        except Exception as exc:  # never let one request take the daemon down
            log.exception("request failed")
            await _quiet(send(protocol.error(req_id, ProtocolError(
                protocol.INTERNAL_ERROR, f"internal error: {exc}", {"reason": "internal_error"}))))

    def _subscribe(self, params: dict[str, Any], send: Callable[[bytes], Any],
                   subscription: list[Subscription], tg: anyio.abc.TaskGroup) -> dict[str, Any]:
        topics = param(params, "topics", list, list(TOPICS))
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            raise ProtocolError(protocol.INVALID_PARAMS, f"unknown topics {unknown}; valid: {list(TOPICS)}")
        for sub in subscription:
            self.core.bus.unsubscribe(sub)
        subscription.clear()
        sub = self.core.bus.subscribe(topics, capacity=param(params, "capacity", int, 2000))
        subscription.append(sub)
        if self.samplers is not None:
            self.samplers.wake()
        tg.start_soon(self._pump, sub, send)
        return {"subscribed": sorted(sub.topics)}

    async def _pump(self, sub: Subscription, send: Callable[[bytes], Any]) -> None:
        try:
            while not sub.closed:
                batch = await sub.next_batch(limit=1000)
                if not batch:
                    break  # unsubscribed
                if len(batch) < 64:
                    # A burst (1,000 log lines/s) arrives one event at a time: wait a frame and
                    # send what gathered in one write, or each line costs the client a wake-up.
                    await anyio.sleep(0.02)
                    batch += sub.drain(1000 - len(batch))
                await send(b"".join(protocol.notification("event", {**event, "dropped": sub.dropped})
                                    for event in batch))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.core.bus.unsubscribe(sub)  # the subscriber hung up mid-send

    # ---- methods ---------------------------------------------------------------

    async def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        core = self.core
        if method == "hello":
            client_version = param(params, "protocol", int, protocol.PROTOCOL_VERSION)
            if client_version != protocol.PROTOCOL_VERSION:
                raise ProtocolError(protocol.PROTOCOL_MISMATCH,
                                    f"protocol {client_version} not supported; daemon speaks "
                                    f"{protocol.PROTOCOL_VERSION}",
                                    {"reason": "protocol_mismatch",
                                     "hint": "stop the old daemon (`kill $(cat "
                                              f"{self.socket_path}.lock)`); the next client "
                                              "starts a new one and it adopts the model"})
            return {"protocol": protocol.PROTOCOL_VERSION, "version": __version__, "pid": os.getpid(),
                    "instance": core.instance, "started_at": self.started_at,
                    "config": str(self.config_path) if self.config_path else None,
                    "socket": str(self.socket_path)}
        if method == "list_models":
            try:
                return {"models": core.list_models()}
            except Exception as exc:
                raise _config_error(exc) from None
        if method == "status":
            status = core.status()
            if self.samplers is not None and param(params, "gpu", bool, True):
                status["gpu"] = await self.samplers.gpu_now()
            return status
        if method == "switch":
            return await self._switch(params)
        if method == "job":
            job = core.job(param(params, "id", str))
            if job is None:
                raise ProtocolError(protocol.NOT_FOUND, "no such job (jobs are kept for the daemon's "
                                    "lifetime)", {"reason": "unknown_job"})
            await _wait(job, param(params, "wait", bool, False), param(params, "timeout", (int, float), 600))
            return job.to_dict()
        if method == "stop":
            force = param(params, "force", bool, False)
            wait = param(params, "wait", bool, True)
            timeout = param(params, "timeout", (int, float), 120)
            try:
                job = await core.stop_model(force=force)
            except SwitchRefused as exc:
                raise _busy(exc) from None
            await _wait(job, wait, timeout)
            return job.to_dict()
        if method == "tail_logs":
            lines = param(params, "lines", int, 100)
            pattern = param(params, "filter", str, "")
            run = param(params, "run", str, "all")
            if run not in ("all", "current", "previous"):
                raise ProtocolError(protocol.INVALID_PARAMS, "run must be all, current or previous")
            try:
                regex = re.compile(pattern, re.IGNORECASE) if pattern else None
            except re.error as exc:
                raise ProtocolError(protocol.INVALID_PARAMS, f"filter is not a valid regex: {exc}") from None
            found = core.logbook.tail(max(0, min(lines, 10000)), regex, run)
            return {"lines": [ln.to_dict() for ln in found], "run": run}
        if method == "config":
            config = core.config()
            return {"path": str(config.path), "instance": config.instance}
        raise ProtocolError(protocol.METHOD_NOT_FOUND, f"unknown method '{method}'; valid: "
                            f"{', '.join(protocol.METHODS)}")

    async def _switch(self, params: dict[str, Any]) -> dict[str, Any]:
        model = param(params, "model", str)
        force = param(params, "force", bool, False)
        rollback = param(params, "rollback", bool, True)
        wait = param(params, "wait", bool, False)  # every parameter checked before anything starts
        timeout = param(params, "timeout", (int, float), 900)
        try:
            job = await self.core.switch(model, force=force, rollback=rollback)
        except SwitchRefused as exc:
            raise _busy(exc) from None
        except SwitchError as exc:
            code = protocol.UNKNOWN_MODEL if exc.reason == "unknown_model" else protocol.CONFIG_ERROR
            raise ProtocolError(code, str(exc), {"reason": exc.reason, "hint": exc.hint,
                                                 "valid": exc.valid}) from None
        await _wait(job, wait, timeout)
        return job.to_dict()


async def _wait(job: Job, wait: bool, timeout: float) -> None:
    if wait:
        with anyio.move_on_after(max(0.0, timeout)):
            await job.done.wait()


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def _busy(exc: SwitchRefused) -> ProtocolError:
    return ProtocolError(protocol.BUSY, str(exc), {
        "reason": "busy", "job": exc.job.to_dict(),
        "hint": "wait for the job (status), or repeat with force to replace it"})


def _config_error(exc: Exception) -> ProtocolError:
    return ProtocolError(protocol.CONFIG_ERROR, str(exc), {"reason": "config_error",
                                                            "hint": "fix models.conf"})


# ---- entry point ---------------------------------------------------------------------


def _setup_logging(state: Path, foreground: bool) -> None:
    state.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(state / "daemon.log")]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /health poll otherwise


def run_daemon(config_path: Path, socket_path: Path, state: Path, *, foreground: bool = True,
               http: tuple[str, int] | None = None) -> int:
    """Run until SIGTERM/SIGINT. The model keeps running: the next daemon adopts it."""
    _setup_logging(state, foreground)
    if len(os.fsencode(socket_path)) > 107:
        print(f"llm-mcp daemon: the socket path {socket_path} is longer than the 107 bytes a Unix "
              "socket allows; choose a shorter --socket or LLM_MCP_SOCKET", file=sys.stderr)
        return 2
    lock = DaemonLock(socket_path)
    try:
        lock.acquire()
    except OSError as exc:
        print(f"llm-mcp daemon: cannot create the lock beside the socket {socket_path}: {exc}",
              file=sys.stderr)
        return 4
    except AlreadyRunning:
        holder = lock.holder()
        print(f"llm-mcp daemon: already running{f' (pid {holder})' if holder else ''} on {socket_path}; "
              "nothing to do", file=sys.stderr)
        return 0
    try:
        initial: Config = load_config(config_path)  # fail early with a located error
    except Exception as exc:
        log.error("%s", exc)
        print(f"llm-mcp daemon: {exc}", file=sys.stderr)
        lock.release()
        return 2
    from llm_mcp.docker_runtime import DockerRuntime
    from llm_mcp.gpu import GpuSampler
    from llm_mcp.system import SystemSampler

    def current_config() -> Config:
        return load_config(config_path)

    runtime = DockerRuntime(initial.instance)
    core = Core(load_config=current_config, runtime=runtime, state_dir=state)

    def our_pids() -> set[int]:
        container_id = core.container_id
        return runtime.container_pids(container_id) if container_id else set()

    samplers = Samplers(core, GpuSampler(container_pids=our_pids), SystemSampler())
    daemon = Daemon(core, socket_path, samplers, config_path)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.serve)
            if http is not None:
                from llm_mcp.http_api import serve_http

                await tg.start(serve_http, daemon, http[0], http[1])
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %s: stopping the daemon (the model keeps running)", signum)
                    tg.cancel_scope.cancel()
                    break

    try:
        anyio.run(main)
    finally:
        lock.release()
    return 0
