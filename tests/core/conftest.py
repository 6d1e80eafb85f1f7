"""The core against the in-memory STAND-IN engine (llm_mcp.runtime.memory): milliseconds per rule.

What only Docker can show (real containers, real llama-server, real outages) stays in
tests/integration; here every scheduling rule runs without Docker, HTTP or sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from llm_mcp.config.compose import LABEL_INSTANCE, LABEL_PROFILE, env_files, profile_spec
from llm_mcp.config.models_conf import Config, Profile, UnknownProfileError, load_config
from llm_mcp.config.placement import conflict
from llm_mcp.core.jobs import Job, SwitchError, SwitchRefused
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable, Runtime, RuntimeFailure
from llm_mcp.runtime.memory import MemoryEngine, MemoryProbe, OffsetClock, Script, probes

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


@pytest.fixture(autouse=True)
def no_core_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A state change outside the transition table, a crashed job, any error the core logs:
    the test fails, naming them (the core itself only logs them, to keep serving)."""
    caplog.set_level(logging.WARNING, logger="llm_mcp")
    yield
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records
              if r.levelno >= logging.ERROR and r.name.startswith("llm_mcp")]
    assert errors == [], "the core logged errors"


class World:
    """One instance's models.conf, state dir and stand-in engine; cores started on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.instance = "m" + uuid.uuid4().hex[:10]
        self.engine = WatchedEngine()
        self.engine.rules[self.instance] = self.conflict
        self.runtime = self.engine.runtime(self.instance)
        self._config: Config | None = None
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
        self._config = None

    def conflict(self, a: str, b: str) -> bool:
        """Whether profiles a and b may not run at once (placement.conflict on models.conf now)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        try:
            return conflict(self._config.profile(a), self._config.profile(b)) is not None
        except UnknownProfileError:
            return True  # a container whose profile left models.conf: nothing may run beside it

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
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    assert w.engine.violations == [], "two conflicting models ran at once"


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


# ---- several models: two stand-in engines, placed profiles, the no-conflict invariant ----------

REMOTE_ADDRESS = "192.0.2.10"  # where the remote engine's ports are reached (TEST-NET-1: nothing real)

# Placement (see /work/team/COMMON.md "The model"): on `local`, alpha and gamma share GPU 0,
# beta has GPU 1, delta pins alpha's port, solo is exclusive; on `remote`, far has GPU 0 and
# near is exclusive there. The remote engine's servers answer on REMOTE_ADDRESS.
PLACED = """
[engine remote]
url = unix:///run/llm-mcp-stand-in/remote.sock
address = 192.0.2.10
gpus = 0,1

[alpha]
name = Alpha
model = alpha.gguf
gpus = 0
port = 18101

[beta]
name = Beta
model = beta.gguf
gpus = 1
port = 18102

[gamma]
name = Gamma
model = alpha.gguf
gpus = 0
port = 18103

[delta]
name = Delta
model = beta.gguf
gpus = none
port = 18101

[solo]
name = Solo
model = alpha.gguf
gpus = none
exclusive = true
port = 18105

[far]
name = Far
model = alpha.gguf
engine = remote
gpus = 0
port = 18106

[near]
name = Near
model = beta.gguf
engine = remote
gpus = none
exclusive = true
port = 18107
"""

# Which pairs conflict in PLACED, as the rule says (checked against placement.conflict too).
CONFLICTS = {frozenset(p) for p in (("alpha", "gamma"), ("alpha", "delta"), ("alpha", "solo"),
                                    ("beta", "solo"), ("gamma", "solo"), ("delta", "solo"),
                                    ("far", "near"))}


class Violations(list[str]):
    """What the invariant checker saw; a test's teardown asserts it stayed empty."""


class WatchedEngine(MemoryEngine):
    """The stand-in engine, plus a look at every container start: no two conflicting models run.

    The check runs inside the engine, at the instant a container starts (the only event that
    can make a pair), so no moment is missed between two samples.
    """

    def __init__(self, clock: OffsetClock | None = None, **options: Any) -> None:
        super().__init__(clock, **options)
        self.rules: dict[str, Callable[[str, str], bool]] = {}  # instance -> do two profiles conflict
        self.violations = Violations()
        self.starts = 0

    def _emit(self, c: Any, action: str) -> None:
        super()._emit(c, action)
        if action == "start":
            self.starts += 1
            self.violations.extend(running_conflicts(self.rules, [
                (o.labels, o.id) for o in list(self._containers.values()) if o.running]))


def running_conflicts(rules: Mapping[str, Callable[[str, str], bool]],
                      running: list[tuple[Mapping[str, str], str]]) -> list[str]:
    """Every conflicting pair among running containers of one engine (labels, id), per instance."""
    found = []
    for i, (a, a_id) in enumerate(running):
        for b, b_id in running[i + 1:]:
            instance = a.get(LABEL_INSTANCE)
            rule = rules.get(instance or "")
            if rule is None or b.get(LABEL_INSTANCE) != instance:
                continue
            pa, pb = a.get(LABEL_PROFILE, ""), b.get(LABEL_PROFILE, "")
            if rule(pa, pb):
                found.append(f"{pa} ({a_id[:12]}) and {pb} ({b_id[:12]}) ran at once")
    return found


class Fleet(World):
    """Two stand-in engines, `local` and `remote`, on one clock, and PLACED's profiles."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # The GPU template: the stand-in ignores the reservation, the core needs it for `gpus`.
        shutil.copy(ROOT / "compose" / "compose.yaml", root / "compose" / "compose.yaml")
        self.remote = WatchedEngine(self.engine.clock, name="remote", address=REMOTE_ADDRESS)
        self.engines: dict[str, MemoryEngine] = {"local": self.engine, "remote": self.remote}
        self.runtimes = {name: e.runtime(self.instance) for name, e in self.engines.items()}
        for engine in self.engines.values():
            assert isinstance(engine, WatchedEngine)
            engine.rules[self.instance] = self.conflict
        self.write(PLACED)

    def script(self, profile_id: str, script: Script) -> None:
        for engine in self.engines.values():
            engine.script(profile_id, script)

    def advance(self, seconds: float) -> None:
        self.engine.advance(seconds)
        self.remote.advance(0)  # the same clock: wake the remote engine's waits too

    def containers(self) -> list[ContainerInfo]:
        return [c for e in self.engines.values() for c in e.containers()]

    def ours(self) -> dict[str, ContainerInfo]:
        """This instance's running containers by profile, on every engine that answers."""
        out = {}
        for runtime in self.runtimes.values():
            with contextlib.suppress(EngineUnavailable):
                out.update({c.profile: c for c in runtime.managed() if c.running})
        return out

    def start_by_hand(self, profile_id: str) -> ContainerInfo:
        config = load_config(self.config_path)
        profile = config.profile(profile_id)
        spec, _ = profile_spec(profile, config.instance)
        return self.runtimes[engine_of(profile)].create_and_start(spec)

    def probe(self, base_url: str) -> MemoryProbe:
        """The URL's host picks the engine, as a real network would."""
        return probes(*self.engines.values())(base_url)

    def url(self, model_id: str) -> str:
        """Where `model_id`'s server answers (its fixed port, on its engine's address)."""
        profile = load_config(self.config_path).profile(model_id)
        host = REMOTE_ADDRESS if engine_of(profile) == "remote" else "127.0.0.1"
        return f"http://{host}:{profile.port}"

    def make_core(self) -> Core:
        path = self.config_path
        core = Core(load_config=lambda: load_config(path), runtimes=self.runtimes,
                    state_dir=self.root / "state", probe_factory=self.probe,
                    health_interval=0.005, clock=self.engine.clock)
        quick_reconnect(core)
        return core

    def violations(self) -> list[str]:
        return [v for e in self.engines.values() if isinstance(e, WatchedEngine) for v in e.violations]

    def env_models(self) -> set[str]:
        """The models that compose/<model>.env files exist for."""
        return set(env_files(self.root / "compose"))


def engine_of(profile: Profile) -> str:
    return str(getattr(profile, "engine", "local") or "local")


def quick_reconnect(core: Core) -> None:
    """Reconnect quickly after a stand-in engine outage (the real backoff starts at 0.5 s)."""
    for engine in core.engines.values():
        engine.link.first_delay = 0.01


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    assert f.violations() == [], "two conflicting models ran at once"


@pytest.fixture
async def fleet_core(fleet: Fleet) -> AsyncIterator[Core]:
    async with fleet.core() as c:
        yield c


def model(core: Core, model_id: str) -> dict[str, Any]:
    """status()["models"] entry of `model_id`; {"state": "stopped"} when it is not listed."""
    for entry in core.status()["models"]:
        if entry["id"] == model_id:
            return dict(entry)
    return {"id": model_id, "state": "stopped", "container": None}


def states(core: Core) -> dict[str, str]:
    """Each listed model's state."""
    return {m["id"]: m["state"] for m in core.status()["models"]}


async def ensured(core: Core, model_id: str, timeout: float = 2.0, **options: bool) -> Job:
    """ensure(model) and wait for its job to end."""
    job = await core.ensure(model_id, **options)
    with anyio.fail_after(timeout):
        await job.done.wait()
    return job


# ---- the storm: many concurrent requests, then what must hold ------------------------------

STORM_OPS = ("ensure", "force", "unload", "unload_all")
STORM_WEIGHTS = (6, 1, 2, 1)


@dataclass(frozen=True, slots=True)
class Request:
    delay: float  # seconds after the storm starts
    op: str  # one of STORM_OPS
    model: str
    fails: bool  # the model's next load fails (the stand-in only)
    load_s: float


@dataclass
class StormLog:
    jobs: list[Job] = field(default_factory=list)
    refused: int = 0
    not_running: int = 0
    ops: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        results = Counter(str(j.result) for j in self.jobs)
        return (f"{sum(self.ops.values())} requests {dict(self.ops)}: {len(self.jobs)} jobs {dict(results)}, "
                f"{self.refused} refused, {self.not_running} not running")


def storm_plan(seed: int, models: list[str], n: int = 50, spread: float = 0.3) -> list[Request]:
    """n requests over `spread` seconds, reproducible from `seed`."""
    rng = random.Random(seed)
    return [Request(delay=rng.uniform(0, spread), op=rng.choices(STORM_OPS, STORM_WEIGHTS)[0],
                    model=rng.choice(models), fails=rng.random() < 0.1, load_s=rng.uniform(0.01, 0.1))
            for _ in range(n)]


async def storm(core: Core, plan: list[Request], script: Callable[[Request], None] | None = None) -> StormLog:
    """Send every request of `plan` at its time, concurrently; what came of them."""
    out = StormLog()

    async def one(r: Request) -> None:
        await anyio.sleep(r.delay)
        if script is not None:
            script(r)
        out.ops[r.op] += 1
        try:
            if r.op == "unload":
                job = await core.unload(r.model)
            elif r.op == "unload_all":
                job = await core.unload_all()
            else:
                job = await core.ensure(r.model, force=r.op == "force")
        except SwitchRefused:
            out.refused += 1
            return
        except SwitchError as exc:
            assert exc.reason == "not_running" and r.op == "unload", (r, exc.reason, str(exc))
            out.not_running += 1
            return
        out.jobs.append(job)

    async with anyio.create_task_group() as tg:
        for request in plan:
            tg.start_soon(one, request)
    return out


def storm_findings(core: Core, containers: Mapping[str, list[ContainerInfo]],
                   conflicts: Callable[[str, str], bool], env_models: set[str]) -> list[str]:
    """What is wrong once a storm has settled: conflicting pairs, jobs in flight, orphans,
    ghosts, `.env` files that do not match. `containers`: each engine's containers of ours."""
    found = []
    status = core.status()
    listed = {m["id"]: m for m in status["models"]}
    if status["jobs"]:
        found.append(f"jobs still in flight: {[j['id'] for j in status['jobs']]}")
    running: dict[str, ContainerInfo] = {}
    for engine, infos in containers.items():
        for c in infos:
            entry = listed.get(c.profile)
            if not c.running:
                found.append(f"{engine}: a {c.status} container of {c.profile} was left behind")
            elif entry is None or entry["container"] is None or not c.id.startswith(entry["container"]["id"]):
                found.append(f"{engine}: orphan container {c.short_id} of {c.profile} (status: {entry})")
            else:
                running[c.profile] = c
    ids = sorted(running)
    found += [f"{a} and {b} run at once" for i, a in enumerate(ids) for b in ids[i + 1:] if conflicts(a, b)]
    for model_id, entry in listed.items():
        if entry["state"] in ("starting", "loading", "ready") and model_id not in running:
            found.append(f"{model_id} is {entry['state']} in status but no container runs it")
    if core.running_ids() != set(running):
        found.append(f"running_ids() {sorted(core.running_ids())} != containers {ids}")
    if env_models != set(running):
        found.append(f"compose/*.env for {sorted(env_models)}, running: {ids}")
    return found


class ConflictSampler:
    """Looks at each engine's container list every few milliseconds in a thread (a real
    engine has no hook inside): every sample, no two conflicting models running."""

    def __init__(self, runtimes: Mapping[str, Runtime], conflicts: Callable[[str, str], bool],
                 interval: float = 0.005) -> None:
        self.runtimes = runtimes
        self.conflicts = conflicts
        self.interval = interval
        self.samples = 0
        self.most_running = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            running = 0
            for engine, runtime in self.runtimes.items():
                try:
                    ids = sorted(c.profile for c in runtime.managed() if c.running)
                except RuntimeFailure:
                    continue  # an engine that is away shows nothing; the others still count
                running += len(ids)
                self.violations += [f"{engine}: {a} and {b} ran at once" for i, a in enumerate(ids)
                                    for b in ids[i + 1:] if self.conflicts(a, b)]
            self.samples += 1
            self.most_running = max(self.most_running, running)

    def __enter__(self) -> ConflictSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
