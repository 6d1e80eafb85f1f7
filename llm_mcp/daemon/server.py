"""The lifecycle daemon: one per socket and one per instance, shared by every client, outliving them all."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from llm_mcp import __version__, protocol
from llm_mcp.config import binds, paths
from llm_mcp.config.models_conf import Config, ConfigReader, load_config
from llm_mcp.core.events import Subscription
from llm_mcp.core.preflight import WontFit
from llm_mcp.core.scheduler import Core, Job, SwitchError, SwitchRefused
from llm_mcp.daemon import event_loop
from llm_mcp.daemon.listeners import serve_forever
from llm_mcp.daemon.model_memory import ModelMemory
from llm_mcp.protocol import ProtocolError
from llm_mcp.util import locks
from llm_mcp.util.safe_files import UnsafePathError, open_private, private_dir, usable_dir

log = logging.getLogger("llm_mcp.daemon.server")

MAX_IN_FLIGHT = 256  # requests one connection may have running; past it, its next line waits


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

    async def gpu_fresh(self) -> dict[str, Any]:
        """A sample taken now (the bench's memory reading must follow its runs, not precede them)."""
        snapshot = await anyio.to_thread.run_sync(self.gpu.sample, limiter=self._threads)
        return dict(snapshot.to_dict())

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
        from llm_mcp.hardware.system import container_stats_from_docker

        slot = self.core.primary_local()  # the monitor's container panel: the primary model's
        if slot is None or slot.sup is None:
            return None
        raw = await anyio.to_thread.run_sync(self.core.runtime.stats, slot.sup.container.id,
                                             limiter=self._threads)
        return None if raw is None else container_stats_from_docker(raw).to_dict()


@dataclass(slots=True)
class Conn:
    """One socket connection, as the methods that need it (subscribe) see it."""

    send: Callable[[bytes], Awaitable[None]]
    tg: anyio.abc.TaskGroup
    subscriptions: list[Subscription] = field(default_factory=list)


Handler = Callable[[Any, Conn | None], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    params: type[protocol.Params]
    handler: Handler


class Daemon:
    def __init__(self, core: Core, socket_path: Path, samplers: Samplers | None = None,
                 config_path: Path | None = None, *, private_socket_dir: bool = False,
                 memory: ModelMemory | None = None) -> None:
        self.core = core
        self.memory = memory
        self.socket_path = socket_path
        self.samplers = samplers
        self.config_path = config_path
        self.private_socket_dir = private_socket_dir
        self.started_at = time.time()
        self.clients = 0
        self.http: str | None = None  # "HOST:PORT" while the HTTP API serves
        self.proxy: str | None = None  # "HOST:PORT" while the model endpoint serves ([proxy] listen)
        self.proxy_error: str | None = None  # why it does not, when it should
        self.methods = self._method_table()

    def _method_table(self) -> dict[str, Method]:
        handlers: dict[str, Handler] = {
            "hello": self._hello,
            "list_models": self._list_models,
            "status": self._status,
            "switch": self._switch,
            "job": self._job,
            "tail_logs": self._tail_logs,
            "stop": self._stop,
            "unload": self._unload,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "bench": self._bench,
        }
        return {name: Method(protocol.PARAMS[name], handlers[name]) for name in protocol.METHODS}

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The default socket dir is ours alone (0700); a dir the user named (/tmp) is only checked.
        (private_dir if self.private_socket_dir else usable_dir)(self.socket_path.parent)
        _remove_stale_socket(self.socket_path)
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
            if self.memory is not None:
                tg.start_soon(self.memory.run)
            tg.start_soon(serve_forever, listener, self._connection)
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
        """Read request lines until the client hangs up; nothing it sends can end the daemon."""
        self.clients += 1
        reader = BufferedByteReceiveStream(stream)
        write_lock = anyio.Lock()
        in_flight = anyio.Semaphore(MAX_IN_FLIGHT)
        conn: Conn | None = None

        async def send(data: bytes) -> None:
            async with write_lock:
                await stream.send(data)

        try:
            async with anyio.create_task_group() as tg:
                conn = Conn(send, tg)
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
                    await in_flight.acquire()
                    tg.start_soon(self._handle_line, line, conn, in_flight)
                tg.cancel_scope.cancel()
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client went away (inside the task group these arrive as a group)
        except* Exception:
            log.exception("connection handler failed")  # one client must never take the daemon down
        finally:
            self.clients -= 1
            if conn is not None:
                self._drop_subscriptions(conn)
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _handle_line(self, line: bytes, conn: Conn, in_flight: anyio.Semaphore) -> None:
        req_id: Any = None
        reply: bytes | None = None
        try:
            req = protocol.parse_request(line)
            req_id = req.id
            value = await self.dispatch(req.method, req.params, conn)
            if req.id is not None:
                reply = protocol.result(req.id, value)
        except ProtocolError as err:
            reply = protocol.error(req_id, err)
        except Exception as exc:  # never let one request take the daemon down
            log.exception("request failed")
            reply = protocol.error(req_id, ProtocolError(
                protocol.INTERNAL_ERROR, f"internal error: {exc}", {"reason": "internal_error"}))
        finally:
            in_flight.release()
        if reply is not None:
            await _quiet(conn.send(reply))  # a client that hung up needs no answer

    async def dispatch(self, method: str, params: dict[str, Any], conn: Conn | None = None) -> Any:
        """Check `params` against the method's schema, then run its handler (socket and HTTP)."""
        entry = self.methods.get(method)
        if entry is None:
            raise protocol.unknown_method(method)
        if method == "hello":
            self._check_protocol(params)  # before the schema: a newer client's fields are no error
        return await entry.handler(protocol.check_params(entry.params, method, params), conn)

    # ---- methods ---------------------------------------------------------------

    def _check_protocol(self, params: dict[str, Any]) -> None:
        client_version = params.get("protocol", protocol.PROTOCOL_VERSION)
        if isinstance(client_version, int) and not isinstance(client_version, bool) and \
                client_version != protocol.PROTOCOL_VERSION:
            raise ProtocolError(protocol.PROTOCOL_MISMATCH,
                                f"protocol {client_version} not supported; daemon speaks "
                                f"{protocol.PROTOCOL_VERSION}",
                                {"reason": "protocol_mismatch",
                                 "hint": "stop the old daemon (`kill $(cat "
                                          f"{self.socket_path}.lock)`); the next client "
                                          "starts a new one and it adopts the model"})

    async def _hello(self, p: protocol.HelloParams, conn: Conn | None) -> dict[str, Any]:
        return {"protocol": protocol.PROTOCOL_VERSION, "version": __version__, "pid": os.getpid(),
                "instance": self.core.instance, "started_at": self.started_at,
                "config": str(self.config_path) if self.config_path else None,
                "socket": str(self.socket_path), "http": self.http, "proxy": self.proxy}

    async def _list_models(self, p: protocol.NoParams, conn: Conn | None) -> dict[str, Any]:
        await self.core.update_fits()  # the "fit" verdicts: cached, re-judged when memory moved
        try:
            return {"models": self.core.list_models()}
        except Exception as exc:
            raise _config_error(exc) from None

    async def _status(self, p: protocol.StatusParams, conn: Conn | None) -> dict[str, Any]:
        status = self.core.status()
        status["proxy"] = {"address": self.proxy, "error": self.proxy_error,
                           "url": f"http://{self.proxy}/v1" if self.proxy else None}
        if self.samplers is not None and p.gpu:
            status["gpu"] = await self.samplers.gpu_now()
        if self.memory is not None:
            for entry in status["models"]:
                entry["memory_bytes"] = self.memory.get(entry["id"])
        return status

    async def _switch(self, p: protocol.SwitchParams, conn: Conn | None) -> dict[str, Any]:
        with _refusals(model=p.model):
            job = await self.core.switch(p.model, force=p.force, rollback=p.rollback)
        await _wait(job, p.wait, p.timeout)
        return job.to_dict()

    async def _bench(self, p: protocol.BenchParams, conn: Conn | None) -> dict[str, Any]:
        from llm_mcp.core.bench_runner import BenchSettings

        settings = BenchSettings(prompt_tokens=p.prompt_tokens, gen_tokens=p.gen_tokens, repeat=p.repeat)
        gpu = self.samplers.gpu_fresh if self.samplers is not None else None
        with _refusals(model=None):
            job = await self.core.bench(list(p.models), settings, force=p.force, gpu_sample=gpu)
        await _wait(job, p.wait, p.timeout)
        return job.to_dict()

    async def _job(self, p: protocol.JobParams, conn: Conn | None) -> dict[str, Any]:
        job = self.core.job(p.id)
        if job is None:
            raise ProtocolError(protocol.NOT_FOUND, "no such job (jobs are kept for the daemon's "
                                "lifetime)", {"reason": "unknown_job"})
        await _wait(job, p.wait, p.timeout)
        return job.to_dict()

    async def _stop(self, p: protocol.StopParams, conn: Conn | None) -> dict[str, Any]:
        try:
            job = await self.core.stop_model(force=p.force)
        except SwitchRefused as exc:
            raise _busy(exc) from None
        await _wait(job, p.wait, p.timeout)
        return job.to_dict()

    async def _unload(self, p: protocol.UnloadParams, conn: Conn | None) -> dict[str, Any]:
        with _refusals(model=p.model):
            job = await self.core.unload(p.model, force=p.force)
        await _wait(job, p.wait, p.timeout)
        return job.to_dict()

    async def _tail_logs(self, p: protocol.TailLogsParams, conn: Conn | None) -> dict[str, Any]:
        from llm_mcp.core.log_query import (
            query_logs,  # the body is log_query's (bounded filter, off the loop)
        )

        return await query_logs(self.core.logbook, lines=p.lines, filter=p.filter, run=p.run,
                                model=p.model)

    async def _subscribe(self, p: protocol.SubscribeParams, conn: Conn | None) -> dict[str, Any]:
        if conn is None:
            raise ProtocolError(protocol.INVALID_REQUEST, "subscribe needs a socket connection")
        self._drop_subscriptions(conn)
        sub = self.core.bus.subscribe(p.topics, capacity=p.capacity)
        conn.subscriptions.append(sub)
        if self.samplers is not None:
            self.samplers.wake()
        conn.tg.start_soon(self._pump, sub, conn)
        return {"subscribed": sorted(sub.topics)}

    async def _unsubscribe(self, p: protocol.NoParams, conn: Conn | None) -> dict[str, Any]:
        if conn is not None:
            self._drop_subscriptions(conn)
        return {"subscribed": []}

    def _drop_subscriptions(self, conn: Conn) -> None:
        for sub in conn.subscriptions:
            with contextlib.suppress(Exception):
                self.core.bus.unsubscribe(sub)
        conn.subscriptions.clear()

    async def _pump(self, sub: Subscription, conn: Conn) -> None:
        """Send a subscription's events; whatever goes wrong ends this subscription only."""
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
                await conn.send(b"".join(protocol.notification("event", {**event, "dropped": sub.dropped})
                                         for event in batch))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the subscriber hung up mid-send
        except Exception:
            log.exception("a subscription failed; it is dropped, the daemon goes on")
        finally:
            with contextlib.suppress(Exception):
                self.core.bus.unsubscribe(sub)


def _remove_stale_socket(path: Path) -> None:
    """Our own socket left by a daemon that died (we hold the lock: nobody serves it); anything
    else at the path (a file, a link, another user's socket) is not ours to delete."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else (
            "another user's socket" if stat.S_ISSOCK(st.st_mode) else "not a socket")
        raise UnsafePathError(f"{path} is {kind}; refusing to replace it with the daemon's socket "
                              "(remove it, or choose another --socket)")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _wait(job: Job, wait: bool, timeout: float) -> None:
    if wait:
        with anyio.move_on_after(max(0.0, timeout)):
            await job.done.wait()


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable


@contextlib.contextmanager
def _refusals(*, model: str | None) -> Iterator[None]:
    """How a job the core would not start (switch or bench) reaches the client: nothing was stopped."""
    try:
        yield
    except SwitchRefused as exc:
        raise _busy(exc) from None
    except WontFit as exc:  # the pre-flight refused it
        data: dict[str, Any] = {"reason": exc.reason, "hint": exc.hint, "fit": exc.preflight.to_dict()}
        if model is not None:
            data["model"] = model
        raise ProtocolError(protocol.WONT_FIT, str(exc), data) from None
    except SwitchError as exc:
        code = {"unknown_model": protocol.UNKNOWN_MODEL, "not_running": protocol.NOT_FOUND}.get(
            exc.reason, protocol.CONFIG_ERROR)
        raise ProtocolError(code, str(exc), {"reason": exc.reason, "hint": exc.hint,
                                             "valid": exc.valid}) from None


def _busy(exc: SwitchRefused) -> ProtocolError:
    return ProtocolError(protocol.BUSY, str(exc), {
        "reason": "busy", "job": exc.job.to_dict(),
        "hint": "wait for the job (status), or repeat with force to replace it"})


def _config_error(exc: Exception) -> ProtocolError:
    return ProtocolError(protocol.CONFIG_ERROR, str(exc), {"reason": "config_error",
                                                            "hint": "fix models.conf"})


# ---- entry point ---------------------------------------------------------------------

EXIT_OK = 0
EXIT_USAGE = 2  # a bad setting: models.conf, --http, $LLM_MCP_HTTP, the socket path
EXIT_UNAVAILABLE = 4  # cannot run here: unusable files, or another daemon drives this instance


def _setup_logging(state: Path, foreground: bool) -> None:
    """daemon.log in the state dir: 0600 in a 0700 dir, never written through a symlink."""
    private_dir(state)
    stream = open_private(state / "daemon.log", "a")  # logging.FileHandler would follow a symlink
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /health poll otherwise


def _say(message: str) -> None:
    print(f"llm-mcp daemon: {message}", file=sys.stderr)


def run_daemon(config_path: Path, socket_path: Path, state: Path, *, foreground: bool = True,
               http: tuple[str, int] | None = None) -> int:
    """Run until SIGTERM/SIGINT. The model keeps running: the next daemon adopts it.

    `http` is the --http flag; without it the daemon serves what $LLM_MCP_HTTP or
    models.conf's [daemon] section says.
    """
    if len(os.fsencode(socket_path)) > 107:
        _say(f"the socket path {socket_path} is longer than the 107 bytes a Unix socket allows; "
             "choose a shorter --socket or LLM_MCP_SOCKET")
        return EXIT_USAGE
    try:
        _setup_logging(state, foreground)
    except OSError as exc:
        _say(f"cannot use the state dir {state} for daemon.log: {exc}")
        return EXIT_UNAVAILABLE
    log.info("daemon %s starting (llm-mcp %s) on %s", os.getpid(), __version__, socket_path)
    private_socket_dir = socket_path.parent == paths.runtime_dir()
    socket_lock = locks.socket_lock(socket_path)
    try:
        (private_dir if private_socket_dir else usable_dir)(socket_path.parent)
        # Wait briefly for a daemon that is shutting down; one that answers is simply running.
        socket_lock.acquire(str(os.getpid()) + "\n", give_up=lambda: _answers(socket_path),
                            on_wait=partial(_waiting, socket_lock.path))
    except locks.LockHeld as held:
        return _already_running(socket_path, held.holder.get("pid"), http)
    except OSError as exc:
        _say(f"cannot create the lock beside the socket {socket_path}: {exc}")
        return EXIT_UNAVAILABLE
    try:
        return _run_locked(_Start(config_path, socket_path, state, http, private_socket_dir))
    finally:
        socket_lock.release()


@dataclass(frozen=True, slots=True)
class _Start:
    config_path: Path
    socket_path: Path
    state: Path
    http_flag: tuple[str, int] | None
    private_socket_dir: bool


def _run_locked(start: _Start) -> int:
    socket_path, state = start.socket_path, start.state
    try:
        initial: Config = load_config(start.config_path)  # fail early with a located error
        http = binds.choose_http(start.http_flag, os.environ.get("LLM_MCP_HTTP"), initial.daemon.http,
                                 initial.daemon.http_allow_remote)
    except Exception as exc:
        log.error("%s", exc)
        _say(str(exc))
        return EXIT_USAGE
    owner = locks.instance_lock(state, initial.instance)

    def owner_serving() -> bool:  # the owner answers on its socket: alive and well, not dying
        other = owner.holder().get("socket")
        return isinstance(other, str) and _answers(Path(other))

    try:
        owner.acquire(locks.instance_content(socket_path), give_up=owner_serving,
                      on_wait=partial(_waiting, owner.path))
    except locks.LockHeld as held:
        pid, other = held.holder.get("pid", "?"), held.holder.get("socket", "?")
        message = (f"instance '{initial.instance}' is already driven by the daemon pid {pid} on the socket "
                   f"{other}; two daemons must not drive the same containers. Use that socket "
                   f"(--socket {other} or LLM_MCP_SOCKET), or stop that daemon first (kill {pid})")
        log.error("%s", message)
        _say(message)
        return EXIT_UNAVAILABLE
    except OSError as exc:
        _say(f"cannot create the instance lock {owner.path}: {exc}")
        return EXIT_UNAVAILABLE
    try:
        return _serve(start, initial, http)
    finally:
        owner.release()


def _serve(start: _Start, initial: Config, http: tuple[str, int] | None) -> int:
    from llm_mcp.core.memory_view import LiveMemoryView
    from llm_mcp.hardware.gpu import GpuSampler
    from llm_mcp.hardware.system import SystemSampler
    from llm_mcp.runtime.docker_engine import DockerRuntime

    config_path, socket_path = start.config_path, start.socket_path
    http_required = start.http_flag is not None

    current_config = ConfigReader(config_path)

    runtimes = {name: DockerRuntime.for_settings(engine, instance=initial.instance)
                for name, engine in initial.engines.items()}
    runtime = runtimes["local"]

    def our_pids() -> set[int]:  # every local container's processes: NVML marks them as ours
        pids: set[int] = set()
        for container_id in core.local_containers():
            pids |= runtime.container_pids(container_id)
        return pids

    gpu = GpuSampler(container_pids=our_pids)
    # The switch's pre-flight: NVML (our container's processes marked), psutil, Docker stats.
    memory = LiveMemoryView(gpu_sample=gpu.sample, container_pids=runtime.container_pids,
                            container_stats=runtime.memory_stats)
    core = Core(load_config=current_config, runtimes=runtimes, state_dir=start.state, memory_view=memory)
    samplers = Samplers(core, gpu, SystemSampler())
    memory_of = ModelMemory(core.local_models, runtime.container_pids, lambda: samplers.last_gpu)
    daemon = Daemon(core, socket_path, samplers, config_path, private_socket_dir=start.private_socket_dir,
                    memory=memory_of)
    failed: list[str] = []

    async def start_http(tg: anyio.abc.TaskGroup, bind: tuple[str, int]) -> None:
        from llm_mcp.daemon.http_api import serve_http

        try:
            port = await tg.start(serve_http, daemon, bind[0], bind[1])
        except OSError as exc:
            message = f"cannot serve the HTTP API on {binds.show(bind)}: {exc}"
            log.error("%s", message)
            if http_required:  # asked for on the command line: say so and stop
                failed.append(message)
                tg.cancel_scope.cancel()
            return  # a setting: the socket clients still get their daemon; daemon.log says why
        daemon.http = binds.show((bind[0], int(port)))

    async def start_proxy(tg: anyio.abc.TaskGroup, listen: str, allow_remote: bool) -> None:
        from llm_mcp.daemon.proxy import serve_proxy

        host, port = binds.parse_bind(listen, allow_remote=allow_remote)  # models.conf checked it
        try:
            port = await tg.start(serve_proxy, daemon, host, port)
        except OSError as exc:  # a setting: the socket clients still get their daemon; status says why
            daemon.proxy_error = f"cannot serve the model endpoint on {listen}: {exc}"
            log.error("%s", daemon.proxy_error)
            return
        daemon.proxy = binds.show((host, int(port)))

    async def main() -> None:
        log.info("event loop: %s", event_loop.loop_name())
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.serve)
            if http is not None:
                await start_http(tg, http)
            if initial.proxy.listen is not None:
                await start_proxy(tg, initial.proxy.listen, initial.proxy.allow_remote)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %s: stopping the daemon (the model keeps running)", signum)
                    tg.cancel_scope.cancel()
                    break

    unusable: list[OSError] = []
    try:
        event_loop.run(main)
    except* OSError as group:  # the socket or its directory cannot be used (a symlink, say)
        unusable.extend(e for e in group.exceptions if isinstance(e, OSError))
    if unusable:
        log.error("cannot serve on %s: %s", socket_path, unusable[0])
        _say(f"cannot serve on {socket_path}: {unusable[0]}")
        return EXIT_UNAVAILABLE
    if failed:
        _say(failed[0])
        return EXIT_USAGE
    return EXIT_OK


def _waiting(lock: Path, holder: dict[str, Any]) -> None:
    _say(f"the daemon pid {holder.get('pid', '?')} holds {lock} but does not answer (starting, or "
         f"shutting down): waiting up to {locks.DYING_WAIT:g} s for it")


def _answers(socket_path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(socket_path))
        except OSError:
            return False
    return True


def _already_running(socket_path: Path, pid: object, http: tuple[str, int] | None) -> int:
    """Another daemon serves this socket: fine, unless --http asked for what it does not serve."""
    who = f" (pid {pid})" if pid else ""
    if http is None:
        _say(f"already running{who} on {socket_path}; nothing to do")
        return EXIT_OK
    from llm_mcp.util.socket_hello import hello_sync

    wanted = binds.show(http)
    try:
        serving = hello_sync(socket_path).get("http")
    except Exception:  # it did not answer in time, or not as a daemon: then it serves nothing we know of
        serving = None
    same_host = serving is not None and serving.rpartition(":")[0] == wanted.rpartition(":")[0]
    if serving is not None and (serving == wanted or (http[1] == 0 and same_host)):
        _say(f"already running{who} on {socket_path}, serving the HTTP API on {serving}; nothing to do")
        return EXIT_OK
    now = f"serves the HTTP API on {serving}" if serving else "does not serve the HTTP API"
    _say(f"a daemon is already running{who} on {socket_path} and {now}, not on {wanted}. "
         f"The HTTP API is a daemon setting: put `http = {wanted}` in the [daemon] section of models.conf "
         f"(or set LLM_MCP_HTTP={wanted}), then restart the daemon (kill {pid or '$(cat SOCKET.lock)'}; "
         "the next llm-mcp command starts it again) so every daemon serves it")
    return EXIT_USAGE
