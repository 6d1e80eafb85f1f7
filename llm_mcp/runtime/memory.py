"""A STAND-IN container engine, in memory: the Runtime for fast tests of the core's scheduling.

Not Docker. `MemoryEngine` is one named engine: the containers of every instance
and a scripted "llama-server" in each; `MemoryRuntime(engine, instance)` is one
instance's view of it with DockerRuntime's semantics (only containers labelled for
that instance and engine are visible; the same errors for the same situations;
EngineUnavailable from every call while the engine is stopped; a host port 0
publishes the next free port from 40000 up). Several engines are several
MemoryEngines sharing one clock. `engine.probe` (or `probes(*engines)` for
several) answers /health and /slots from the same script, so no HTTP is involved.
A test says how a profile's server behaves (`Script`) and acts on containers the
way a user with the docker CLI would (kill, stop, remove, pause, stop the engine
with or without live-restore).

Time is `engine.clock`: real monotonic time plus what `engine.advance()` added,
so a test can jump over a stall timeout; give the same clock to the Core. No
threads of its own: scripted events happen when a caller looks, and the blocking
calls (wait, follow_logs, events, a stubborn stop) wait on one condition with a
timeout that ends at the next scheduled event.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llm_mcp.config.compose import (
    LABEL_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_PROFILE,
    MANAGED_BY,
    ContainerSpec,
)
from llm_mcp.runtime.base import DEFAULT_ENGINE, LABEL_ENGINE, ContainerInfo, EngineUnavailable, StartError
from llm_mcp.runtime.docker_engine import classify_start_error, client_host, engine_words
from llm_mcp.runtime.docker_problem import describe
from llm_mcp.runtime.health import Completion, Health
from llm_mcp.runtime.log_signals import Failure

__all__ = ["MemoryEngine", "MemoryProbe", "MemoryRuntime", "OffsetClock", "Script", "probes"]

HOST = "memory://stand-in"  # the local engine's URL; another engine's is memory://NAME
FIRST_AUTO_PORT = 40000
POLL_S = 0.02  # how often a blocked call looks at its stop/cancel event
LOAD_LINES = ("llama_model_loader: loading model from /models/model.gguf",
              "load_tensors: offloaded 0/1 layers to GPU",
              "llama_context: n_ctx = 256")
READY_LINES = ("main: model loaded", "main: server is listening on http://0.0.0.0:8080")


class OffsetClock:
    """Monotonic time that a test can move forward: real time plus what `advance` added."""

    def __init__(self) -> None:
        self._offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self._offset

    def wall(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass(frozen=True, slots=True)
class Script:
    """How one profile's server behaves, in seconds from its start."""

    load_s: float = 0.02  # until /health answers 200; the load lines are spread over it
    load_lines: tuple[str, ...] = LOAD_LINES
    ready_lines: tuple[str, ...] = READY_LINES
    fail_code: int | None = None  # the load ends with this exit code (after fail_lines) instead
    fail_lines: tuple[str, ...] = ()
    stall: bool = False  # prints the first load line, then nothing; never ready
    crash_after_s: float | None = None  # seconds after ready: exits with crash_code
    crash_lines: tuple[str, ...] = ()
    crash_code: int = 139
    term_exit_code: int | None = 0  # on SIGTERM; None: ignores it (killed after the grace)
    tps: float | None = 50.0
    slots: bool = True  # /slots enabled
    memory_bytes: int = 256 << 20

    @classmethod
    def fails(cls, *lines: str, code: int = 1, after: float = 0.02) -> Script:
        return cls(load_s=after, fail_code=code, fail_lines=lines)

    @classmethod
    def stalls(cls) -> Script:
        return cls(stall=True)

    @classmethod
    def crashes_after_ready(cls, *lines: str, after: float = 0.02, code: int = 139) -> Script:
        return cls(crash_after_s=after, crash_lines=lines, crash_code=code)


@dataclass(eq=False)
class _Container:
    id: str
    name: str
    spec: ContainerSpec
    script: Script
    started_at: float  # wall
    t0: float  # clock
    status: str = "running"
    exit_code: int | None = 0
    port: int | None = None  # the host port published (an auto one chosen at start)
    finished_at: float | None = None  # wall
    ready: bool = False
    pending: list[tuple[float, str, Any]] = field(default_factory=list)  # (due, what, arg), sorted
    lines: list[tuple[str, str]] = field(default_factory=list)  # (docker timestamp, text)
    paused_at: float | None = None
    busy: list[tuple[float, int]] = field(default_factory=list)  # (until, slots)

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.labels

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id, name=self.name, status=self.status, profile=self.labels.get(LABEL_PROFILE, ""),
            config_hash=self.labels.get(LABEL_HASH, ""), image=self.spec.image,
            started_at=self.started_at, exit_code=self.exit_code, oom_killed=False,
            pid=None,  # no host process: nothing of the host's GPU memory is attributed to it
            engine=self.labels.get(LABEL_ENGINE) or DEFAULT_ENGINE,
            host_port=self.port if self.running or self.fixed_port() else None,  # Docker's, see _host_port
            finished_at=self.finished_at)

    def fixed_port(self) -> bool:
        return any(port for _, port in self.spec.ports.values())

    def host_ports(self) -> set[int]:
        """The host ports it holds: the fixed ones asked for, and the auto one it was given."""
        ports = {port for _, port in self.spec.ports.values() if port}
        return ports | {self.port} if self.port is not None else ports


@dataclass(eq=False)
class _Subscriber:
    instance: str
    engine: str
    queue: list[tuple[str, str]] = field(default_factory=list)


class MemoryEngine:
    """One engine's containers (every instance's), their scripted servers, and its up/down state.

    `name` is the engine's name in models.conf; `live_restore` whether its containers
    outlive the engine stopping (dockerd --live-restore) or stop with it.
    """

    def __init__(self, clock: OffsetClock | None = None, *, name: str = DEFAULT_ENGINE,
                 live_restore: bool = True, address: str | None = None) -> None:
        self.clock = clock or OffsetClock()
        self.name = name
        self.host = HOST if name == DEFAULT_ENGINE else f"memory://{name}"
        self.address = address  # where its published ports are reached; None: this machine
        self.live_restore = live_restore
        self.up = True
        self.missing_images: set[str] = set()
        self._cond = threading.Condition()
        self._containers: dict[str, _Container] = {}
        self._scripts: dict[str, Script] = {}
        self._subscribers: list[_Subscriber] = []
        self._next_port = FIRST_AUTO_PORT

    # ---- what a test says and does --------------------------------------------------------

    def script(self, profile_id: str, script: Script) -> None:
        """How the servers of containers started for `profile_id` from now on behave."""
        with self._cond:
            self._scripts[profile_id] = script

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the Core shares it): due events happen, waits time out."""
        with self._cond:
            self.clock.advance(seconds)
            self._cond.notify_all()

    def containers(self) -> list[ContainerInfo]:
        """Every container of the engine, any instance or none (what `docker ps -a` shows)."""
        with self._cond:
            self._step()
            return [c.info() for c in self._containers.values()]

    def run_container(self, spec: ContainerSpec) -> ContainerInfo:
        """`docker run` of any spec, labelled or not (a neighbour's container, a name squatter)."""
        with self._cond:
            self._check()
            return self._create_and_start(spec)

    def kill(self, container_id: str, code: int = 137) -> None:
        """`docker kill`."""
        with self._cond:
            c = self._get(container_id)
            if c.running:
                self._emit(c, "kill")
                self._exit(c, code)

    def stop(self, container_id: str) -> None:
        """`docker stop` with no grace left: SIGTERM, SIGKILL if the server ignores it."""
        with self._cond:
            c = self._get(container_id)
            if c.running:
                code = c.script.term_exit_code if c.status == "running" else None
                self._emit(c, "kill")
                self._exit(c, 137 if code is None else code)
                self._emit(c, "stop")

    def remove(self, container_id: str) -> None:
        """`docker rm -f`."""
        with self._cond:
            self._remove(self._get(container_id))

    def pause(self, container_id: str) -> None:
        with self._cond:
            c = self._get(container_id)
            if c.status == "running":
                c.status, c.paused_at = "paused", self.clock()
                self._emit(c, "pause")

    def unpause(self, container_id: str) -> None:
        """Its scripted future resumes where it was: the pause shifts every pending event."""
        with self._cond:
            c = self._get(container_id)
            if c.status == "paused" and c.paused_at is not None:
                shift = self.clock() - c.paused_at
                c.pending = [(due + shift, what, arg) for due, what, arg in c.pending]
                c.status, c.paused_at = "running", None
                self._emit(c, "unpause")

    def busy(self, container_id: str, seconds: float, slots: int = 1) -> None:
        """`slots` slots generate for `seconds` from now (what /slots reports)."""
        with self._cond:
            self._get(container_id).busy.append((self.clock() + seconds, slots))

    def stop_engine(self, *, live_restore: bool | None = None) -> None:
        """The engine stops answering. With live-restore (the engine's own setting unless
        given) its containers keep running (and serving); without, they stop with it."""
        with self._cond:
            self._step()
            self.up = False
            if not (self.live_restore if live_restore is None else live_restore):
                for c in self._containers.values():
                    if c.running:
                        term = c.script.term_exit_code
                        self._exit(c, 137 if term is None or c.status == "paused" else term)
            self._cond.notify_all()

    def start_engine(self) -> None:
        with self._cond:
            self.up = True
            self._cond.notify_all()

    # ---- the stand-in llama-server's HTTP side ------------------------------------------

    def probe(self, base_url: str) -> MemoryProbe:
        """The probe_factory for the Core: llama-server at base_url, answered from the script."""
        return MemoryProbe(self, urlsplit(base_url).port)

    def _serving(self, port: int | None) -> tuple[_Container | None, str]:
        """The running container publishing host `port`, and what its server can answer."""
        with self._cond:
            self._step()
            for c in self._containers.values():
                if c.running and port in c.host_ports():
                    if c.status == "paused":
                        return c, "frozen"
                    return c, "ready" if c.ready else "loading"
            return None, "closed"

    def _busy_slots(self, c: _Container) -> int:
        with self._cond:
            now = self.clock()
            c.busy = [(until, n) for until, n in c.busy if until > now]
            return sum(n for _, n in c.busy)

    # ---- the engine's side ------------------------------------------------------------

    def _check(self) -> None:
        if not self.up:
            problem = describe("Error while fetching server API version: ('Connection aborted.', "
                               "FileNotFoundError(2, 'No such file or directory'))", self.host)
            raise EngineUnavailable(engine_words(problem.sentence, self.name), hint=problem.hint,
                                    detail="the stand-in engine was stopped by the test", engine=self.name)

    def _get(self, container_id: str) -> _Container:
        c = self._containers.get(container_id)
        if c is None:
            raise KeyError(f"no container {container_id} in the stand-in engine")
        return c

    def _find(self, ref: str) -> _Container | None:
        """By id, id prefix or name, as the Docker API resolves a reference."""
        if ref in self._containers:
            return self._containers[ref]
        for c in self._containers.values():
            if c.name == ref or (len(ref) >= 12 and c.id.startswith(ref)):
                return c
        return None

    def _emit(self, c: _Container, action: str) -> None:
        for sub in self._subscribers:
            if _labelled_for(c, sub.instance, sub.engine):
                sub.queue.append((action, c.id))
        self._cond.notify_all()

    def _timestamp(self, due: float) -> str:
        wall = self.clock.wall() - (self.clock() - due)
        stamp = datetime.fromtimestamp(wall, UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}000Z"

    def _step(self) -> None:
        """Apply every scripted event that is due (call with the condition held)."""
        now = self.clock()
        changed = False
        for c in self._containers.values():
            while c.status == "running" and c.pending and c.pending[0][0] <= now:
                due, what, arg = c.pending.pop(0)
                changed = True
                if what == "line":
                    c.lines.append((self._timestamp(due), arg))
                elif what == "ready":
                    c.ready = True
                elif what == "exit":
                    self._exit(c, arg)
        if changed:
            self._cond.notify_all()

    def _next_due(self) -> float | None:
        dues = [c.pending[0][0] for c in self._containers.values() if c.status == "running" and c.pending]
        return min(dues) if dues else None

    def _sleep(self, cap: float = POLL_S) -> None:
        """Wait for a change, the next scripted event, or `cap` seconds (condition held)."""
        due = self._next_due()
        delay = cap if due is None else min(cap, max(0.0, due - self.clock()))
        self._cond.wait(delay)
        self._step()

    def _exit(self, c: _Container, code: int) -> None:
        c.status, c.exit_code, c.ready, c.pending, c.paused_at = "exited", code, False, [], None
        c.finished_at = self.clock.wall()
        self._emit(c, "die")

    def _remove(self, c: _Container) -> None:
        if c.running:
            self._emit(c, "kill")
            self._exit(c, 137)
        del self._containers[c.id]
        self._emit(c, "destroy")

    def _schedule(self, c: _Container) -> None:
        s, t = c.script, c.t0
        plan: list[tuple[float, str, Any]] = []
        lines = s.load_lines[:1] if s.stall else s.load_lines
        for i, line in enumerate(lines):
            plan.append((t + s.load_s * i / max(1, len(lines)), "line", line))
        if not s.stall:
            end = t + s.load_s
            if s.fail_code is not None:
                plan += [(end, "line", line) for line in s.fail_lines] + [(end, "exit", s.fail_code)]
            else:
                plan += [(end, "line", line) for line in s.ready_lines] + [(end, "ready", None)]
                if s.crash_after_s is not None:
                    crash = end + s.crash_after_s
                    plan += [(crash, "line", line) for line in s.crash_lines]
                    plan.append((crash, "exit", s.crash_code))
        c.pending = plan  # already in time order; lines before the event at the same instant

    def _create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        if spec.image in self.missing_images:  # DockerRuntime's words
            raise StartError(Failure("image_missing", f"the image '{spec.image}' is not on this machine",
                                     f"docker pull {spec.image} (or build it)"), spec.image)
        stale = self._find(spec.name)
        if stale is not None:
            if stale.labels.get(LABEL_MANAGED) != MANAGED_BY:
                raise StartError(Failure(
                    "name_conflict", f"a container named '{spec.name}' exists and is not managed by "
                    "llm-mcp", f"rename or remove it yourself (`docker rm -f {spec.name}`); llm-mcp "
                    "never touches containers it did not label"), spec.name)
            self._remove(stale)  # a leftover of ours would block the name, as DockerRuntime does
        for mount in spec.mounts:
            if not Path(mount.source).exists():
                detail = ('invalid mount config for type "bind": bind source path does not exist: '
                          f"{mount.source}")
                raise StartError(classify_start_error(detail, spec), detail)
        c = _Container(id=uuid.uuid4().hex + uuid.uuid4().hex, name=spec.name, spec=spec,
                       script=self._scripts.get(spec.labels.get(LABEL_PROFILE, ""), Script()),
                       started_at=self.clock.wall(), t0=self.clock(), status="created", exit_code=0)
        self._containers[c.id] = c
        self._emit(c, "create")
        taken = {p for o in self._containers.values() if o is not c and o.running for p in o.host_ports()}
        clash = sorted(c.host_ports() & taken)
        if clash:  # Docker: the start fails; DockerRuntime removes what it created
            del self._containers[c.id]
            self._emit(c, "destroy")
            detail = f"Bind for 0.0.0.0:{clash[0]} failed: port is already allocated"
            raise StartError(classify_start_error(detail, spec), detail)
        c.port = next((port for _, port in spec.ports.values() if port), None)
        if c.port is None and spec.ports:  # port 0: the next free one, as Docker's ephemeral range
            while self._next_port in taken:
                self._next_port += 1
            c.port, self._next_port = self._next_port, self._next_port + 1
        c.status = "running"
        self._schedule(c)
        self._emit(c, "start")
        self._step()
        return c.info()

    def runtime(self, instance: str, name: str | None = None) -> MemoryRuntime:
        """One instance's view; `name` another engine name for the same engine (two models.conf
        sections naming one dockerd): it sees only the containers labelled with that name."""
        return MemoryRuntime(self, instance, name)


class MemoryRuntime:
    """The Runtime (llm_mcp.runtime.base) of one instance on a MemoryEngine; a stand-in for DockerRuntime.

    `engine` is the engine's name (as DockerRuntime's); `backend` the MemoryEngine itself.
    """

    def __init__(self, engine: MemoryEngine, instance: str, name: str | None = None) -> None:
        self.backend = engine
        self.instance = instance
        self.base_url = engine.host
        self._name = name or engine.name

    @property
    def engine(self) -> str:
        return self._name

    @property
    def host(self) -> str:
        return self.backend.host

    def published_host(self, bind_ip: str) -> str:
        return self.backend.address or client_host(bind_ip)

    def _ours(self, c: _Container | None) -> _Container | None:
        if c is None or not _labelled_for(c, self.instance, self._name):
            return None
        return c

    def _look(self, container_id: str) -> _Container | None:
        """Ours by reference (condition held, engine checked, due events applied)."""
        e = self.backend
        e._check()
        e._step()
        return self._ours(e._find(container_id))

    def ping(self) -> None:
        with self.backend._cond:
            self.backend._check()

    def managed(self) -> list[ContainerInfo]:
        with self.backend._cond:
            self.backend._check()
            self.backend._step()
            infos = [c.info() for c in self.backend._containers.values() if self._ours(c)]
        return sorted(infos, key=lambda i: i.started_at or 0.0, reverse=True)

    def inspect(self, container_id: str) -> ContainerInfo | None:
        with self.backend._cond:
            c = self._look(container_id)
            return None if c is None else c.info()

    def image_present(self, image: str) -> bool:
        with self.backend._cond:
            self.backend._check()
            return image not in self.backend.missing_images

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        stamped = replace(spec, labels={**spec.labels, LABEL_ENGINE: self._name})  # as Docker's
        with self.backend._cond:
            self.backend._check()
            return self.backend._create_and_start(stamped)

    def stop_and_remove(self, container_id: str, grace: float) -> int | None:
        e = self.backend
        with e._cond:
            c = self._look(container_id)
            if c is None:
                return None
            if c.running:
                e._emit(c, "kill")
                term = c.script.term_exit_code if c.status == "running" else None
                if term is not None:
                    e._exit(c, term)
                else:  # it ignores SIGTERM: Docker waits out the grace, then SIGKILL
                    deadline = e.clock() + max(0.0, grace)
                    while c.running and e.clock() < deadline:
                        e._sleep(max(0.0, min(POLL_S, deadline - e.clock())))
                        e._check()
                    if c.running:
                        e._exit(c, 137)
                e._emit(c, "stop")
            code = c.exit_code
            if c.id in e._containers:
                e._remove(c)
            return code

    def wait(self, container_id: str, cancel: threading.Event | None = None) -> ContainerInfo | None:
        e = self.backend
        with e._cond:
            while cancel is None or not cancel.is_set():
                c = self._look(container_id)  # raises EngineUnavailable when the engine stops
                if c is None:
                    return None
                if not c.running:
                    return c.info()
                e._sleep()
        return None

    def follow_logs(self, container_id: str, on_line: Callable[[str, str], None],
                    stop: threading.Event, since: float | None = None) -> None:
        """Never raises, like DockerRuntime's: it just ends (with the container, the engine or stop)."""
        e = self.backend
        sent = 0
        try:
            while not stop.is_set():
                with e._cond:
                    if not e.up:
                        return
                    e._step()
                    c = self._ours(e._find(container_id))
                    if c is None:
                        return
                    new, sent = c.lines[sent:], len(c.lines)
                    ended = not c.running
                    if not new and not ended:
                        e._sleep()
                        continue
                for ts, text in new:
                    if stop.is_set():  # whoever stopped us may be gone: deliver nothing more
                        return
                    if since is None or since <= 0 or _seconds(ts) >= since:
                        on_line(ts, text)
                if ended:
                    return
        finally:
            stop.set()

    def events(self, on_event: Callable[[str, str], None], stop: threading.Event) -> None:
        """Raises EngineUnavailable when the stream cannot start; ends when the engine stops."""
        e = self.backend
        sub = _Subscriber(self.instance, self._name)
        with e._cond:
            e._check()
            e._subscribers.append(sub)
        try:
            while not stop.is_set():
                with e._cond:
                    if not e.up:
                        return
                    if not sub.queue:
                        e._sleep()
                    batch, sub.queue = sub.queue, []
                for action, container_id in batch:
                    if stop.is_set():  # whoever stopped us may be gone: deliver nothing more
                        return
                    on_event(action, container_id)
        finally:
            with e._cond:
                e._subscribers.remove(sub)
            stop.set()

    def stats(self, container_id: str) -> dict[str, Any] | None:
        with self.backend._cond:
            if not self.backend.up:
                return None
            c = self._look(container_id)
            if c is None or not c.running:
                return None
            return {"memory_stats": {"usage": c.script.memory_bytes, "limit": 64 << 30,
                                     "stats": {"inactive_file": 0}},
                    "cpu_stats": {}, "precpu_stats": {}}

    def memory_stats(self, container_id: str) -> dict[str, Any] | None:
        return self.stats(container_id)

    def container_pids(self, container_id: str) -> set[int]:
        return set()  # no host processes

    def close(self) -> None:
        return None  # no connections


def _labelled_for(c: _Container, instance: str, engine: str) -> bool:
    """DockerRuntime's label filter: managed by llm-mcp, for this instance and this engine."""
    return (c.labels.get(LABEL_MANAGED) == MANAGED_BY and c.labels.get(LABEL_INSTANCE) == instance
            and (c.labels.get(LABEL_ENGINE) or DEFAULT_ENGINE) == engine)


def _seconds(ts: str) -> float:
    return datetime.strptime(ts[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def probes(*engines: MemoryEngine) -> Callable[[str], MemoryProbe]:
    """The probe_factory for several engines: the URL's host picks the engine (its `address`;
    any other host is this machine's, the engine without an address)."""

    def probe(base_url: str) -> MemoryProbe:
        host = urlsplit(base_url).hostname
        chosen = next((e for e in engines if e.address is not None and e.address == host), None)
        chosen = chosen or next((e for e in engines if e.address is None), engines[0])
        return chosen.probe(base_url)

    return probe


class MemoryProbe:
    """The stand-in of LlamaServerProbe for a MemoryEngine: the script answers, no HTTP."""

    def __init__(self, engine: MemoryEngine, port: int | None) -> None:
        self.engine = engine
        self.port = port

    async def health(self) -> Health:
        _, state = self.engine._serving(self.port)
        if state == "ready":
            return Health("ok", 200, "")
        if state == "loading":
            return Health("loading", 503, "Loading model")
        return Health("unreachable", None, "ReadTimeout" if state == "frozen" else "ConnectError")

    async def busy_slots(self) -> int | None:
        c, state = self.engine._serving(self.port)
        if c is None or state != "ready" or not c.script.slots:
            return None
        return self.engine._busy_slots(c)

    async def measure_speed(self, model: str, max_tokens: int = 32) -> float | None:
        c, state = self.engine._serving(self.port)
        return c.script.tps if c is not None and state == "ready" else None

    async def slot_context(self) -> int | None:
        _, state = self.engine._serving(self.port)
        return 256 if state == "ready" else None

    async def tokenize(self, text: str) -> list[int] | None:
        _, state = self.engine._serving(self.port)
        return list(range(1, len(text.split()) + 1)) if state == "ready" else None

    async def timed_completion(self, prompt: list[int], n_predict: int, timeout: float) -> Completion:
        c, state = self.engine._serving(self.port)
        if c is None or state != "ready" or not c.script.tps:
            return Completion(None, "ConnectError: the server does not answer")
        tps = c.script.tps
        return Completion({"prompt_n": len(prompt), "prompt_per_second": tps * 10,
                           "predicted_n": n_predict, "predicted_per_second": tps}, None)

    async def aclose(self) -> None:
        return None
