"""The scheduler: the one writer of the set of running models, across Docker engines.

`ensure(model)` makes a model ready, stopping first (after draining) only the
running models that conflict with it (config/placement.py); models that do not
conflict keep serving, and loads that do not conflict run in parallel. Each
change is a Job owned by the core, not by whoever asked: a request for the model
a job is loading joins it, one that conflicts with a job in flight is refused
(or, with force, replaces it), and a caller that goes away leaves it running. A
load that fails brings back every model it stopped.

Each container has a Supervisor (core/supervisor.py) that observes it; every
state change goes through the transition table (core/transitions.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from llm_mcp.config.compose import profile_spec, remove_env_file, write_env_file
from llm_mcp.config.models_conf import Config, Profile, UnknownProfileError
from llm_mcp.config.placement import conflict
from llm_mcp.core import adoption, bench_job, status_view, transitions
from llm_mcp.core.bench_job import GpuSampleFn
from llm_mcp.core.bench_runner import BenchSettings
from llm_mcp.core.bench_store import BenchStore
from llm_mcp.core.engine_link import (
    DOCKER_UNAVAILABLE,
    EngineLink,
    outage_failure,
    reconnect_hint,
)
from llm_mcp.core.events import EventBus
from llm_mcp.core.fit_board import FitBoard
from llm_mcp.core.jobs import Job, SwitchError, SwitchRefused
from llm_mcp.core.load_history import LoadHistory
from llm_mcp.core.logbook import Logbook
from llm_mcp.core.memory_view import MemoryView
from llm_mcp.core.preflight import MemorySnapshot, Preflight, WontFit
from llm_mcp.core.preflight import unknown as fit_unknown
from llm_mcp.core.ready_health import ReadyHealth
from llm_mcp.core.requests import RequestBook
from llm_mcp.core.slots import LOCAL, Engine, Slot, client_host
from llm_mcp.core.supervisor import Observers, Supervisor
from llm_mcp.core.switch_intent import IntentFile, SwitchIntent
from llm_mcp.core.transitions import State
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable, Runtime, RuntimeFailure, StartError
from llm_mcp.runtime.health import LlamaServerProbe, Probe
from llm_mcp.runtime.log_signals import STALLED, TIMED_OUT, Failure, exit_failure, match_failure

__all__ = ["Core", "Job", "Runtime", "State", "SwitchError", "SwitchRefused"]

log = logging.getLogger("llm_mcp.scheduler")

PREFLIGHT_TIMEOUT_S = 5.0  # NVML, docker top and psutil answer in ~30 ms; past this, no verdict
FITS_FRESH_S = 1.0  # list_models reuses verdicts this young (a switch's pre-flight never does)
MAX_JOBS_KEPT = 200
TURN_MAX = 60.0  # seconds: the longest turn a busy model keeps against loads on demand (turn_left)

REMOVED = Failure("container_removed", "the container was removed outside llm-mcp while it was loading",
                  "something ran `docker rm` on it; switch to the model again to start it")


class Core:
    def __init__(
        self,
        *,
        load_config: Callable[[], Config],
        runtime: Runtime | None = None,
        runtimes: Mapping[str, Runtime] | None = None,
        state_dir: Path,
        bus: EventBus | None = None,
        probe_factory: Callable[[str], Probe] = LlamaServerProbe,
        health_interval: float = 0.1,
        ready_health_interval: float = 3.0,
        log_capacity: int = 5000,
        memory_view: MemoryView | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if runtimes is None:
            if runtime is None:
                raise TypeError("Core needs runtime= or runtimes=")
            runtimes = {LOCAL: runtime}
        self._load_config = load_config
        self.state_dir = state_dir
        self.bus = bus or EventBus()
        self.probe_factory = probe_factory
        self.health_interval = health_interval
        self.ready_health_interval = ready_health_interval
        self._clock = clock  # a load's stall and timeout; tests move it (runtime.memory.OffsetClock)
        config = load_config()
        self.instance = config.instance
        # The engines are fixed for the daemon's life (their runtimes are made at start).
        self._engine_settings = dict(config.engines)
        self.logbook = Logbook(state_dir / "logs" / self.instance, capacity=log_capacity,
                               on_line=lambda ln: self.bus.publish("log", ln.to_dict()))
        self.logbook.restore_history()  # `logs` across daemon restarts: earlier runs first
        self._history_error: str | None = None  # the load history could not be saved
        self.history = LoadHistory(state_dir / f"load-history-{self.instance}.json")
        self.bench_store = BenchStore(state_dir / f"bench-{self.instance}.json")
        self._threads = anyio.CapacityLimiter(64)
        self.engines: dict[str, Engine] = {
            name: Engine(name, rt, EngineLink(rt.ping, name=name, url=rt.host, limiter=self._threads))
            for name, rt in runtimes.items()}
        self._slots: dict[str, Slot] = {}
        self._order = 0
        self.requests = RequestBook(clock)  # the endpoint's requests per model (drain, ttl, status)
        self._primary: str | None = None  # the model the single-model status fields describe
        self._active: list[Job] = []  # jobs in flight
        self._jobs: dict[str, Job] = {}
        self._last_job: Job | None = None
        self._idle_since = time.time()  # when nothing has run since (the status of an idle core)
        self._tg: anyio.abc.TaskGroup | None = None
        self.intent = IntentFile(state_dir / f"switch-intent-{self.instance}.json")
        self.started = anyio.Event()
        self._shutdown = threading.Event()  # set when the core stops: ends its Docker waits
        self._observers = Observers(limiter=self._threads, shutdown=self._shutdown,
                                    on_lines=self._on_lines, on_gone=self._container_gone,
                                    on_engine_lost=partial(adoption.engine_lost, self))
        # Pre-flight (docs/fit.md): None switches it off (fit "unknown" in list_models).
        self.memory_view = memory_view
        self.fits = FitBoard(anyio.CapacityLimiter(2))
        self._fits_done: anyio.Event | None = None  # the list_models refresh in flight
        self._fits_at = -FITS_FRESH_S  # when the last one ended (monotonic)

    # ---- public API -------------------------------------------------------------

    def config(self) -> Config:
        return self._load_config()

    def _local(self) -> Engine:
        return self.engines[LOCAL] if LOCAL in self.engines else next(iter(self.engines.values()))

    @property
    def runtime(self) -> Runtime:
        """The local engine's runtime (the one a single-engine setup has)."""
        return self._local().runtime

    @property
    def engine(self) -> EngineLink:
        """The local engine's link (status' `docker` field, as in the single-engine version)."""
        return self._local().link

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for engine in self.engines.values():
                tg.start_soon(adoption.watch_docker_events, self, engine)
                tg.start_soon(engine.link.run, lambda e=engine: adoption.engine_back(self, e))
            with anyio.move_on_after(10):  # one slow engine must not keep the others from starting
                async with anyio.create_task_group() as first:
                    intent = self.intent.read()
                    for engine in self.engines.values():
                        first.start_soon(adoption.reconcile, self, engine, intent)
            self.intent.clear()
            tg.start_soon(self._preload)
            tg.start_soon(self._expire_idle)
            if self.memory_view is not None:  # read every profile's header now: later looks are free
                tg.start_soon(self.update_fits, 0.0)
            self.started.set()
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._detach_all()
                tg.cancel_scope.cancel()

    async def _preload(self) -> None:
        """Ensure every `preload = true` profile at start, one after another; one that conflicts
        with a model already running (adopted, or preloaded before it) is skipped, and says so."""
        try:
            profiles = [p for p in self.config().profiles.values() if p.preload]
        except Exception:
            return  # a broken models.conf: status says so; nothing to preload
        for profile in profiles:
            clash = [m for m in self._would_stop(profile)]
            if profile.id in self.running_ids() or clash:
                if clash:
                    self.logbook.note(f"preload of {profile.name} skipped: it conflicts with "
                                      f"{', '.join(clash)}, which runs", model=profile.id)
                continue
            try:
                job = await self.ensure(profile.id)
                await job.done.wait()
            except (SwitchError, SwitchRefused, WontFit) as exc:
                self.logbook.note(f"preload of {profile.name} skipped: {exc}", model=profile.id)
            except Exception:  # never the end of the core: the next profile is still preloaded
                log.exception("preloading %s failed", profile.id)

    async def _expire_idle(self) -> None:
        """Unload a ready model idle for its `ttl` (no request in flight, none queued)."""
        while True:
            await anyio.sleep(self.health_interval * 10)  # 1 s by default: a ttl is whole seconds
            try:
                await self._expire_once()
            except Exception:  # a bug here must not end the core (and with it the daemon)
                log.exception("the ttl check failed; trying again")

    async def _expire_once(self) -> None:
        for slot in list(self._slots.values()):
            remaining = self._ttl_remaining(slot)
            if remaining is None or remaining > 0:
                continue
            if any(slot.model in j.claims for j in self._active if not j.done.is_set()):
                continue
            assert slot.profile is not None and slot.profile.ttl is not None
            with contextlib.suppress(SwitchError, SwitchRefused):
                await self.unload(slot.model, idle=f"idle for {slot.profile.ttl:g} s (ttl)")

    def _ttl_remaining(self, slot: Slot) -> float | None:
        """Seconds until the ttl unloads a ready model; None when it has no ttl (or is not ready)."""
        if slot.profile is None or slot.profile.ttl is None or slot.state != State.READY or slot.sup is None:
            return None
        idle = self.requests.idle_for(slot.model)
        since_ready = self._clock() - slot.ready_at
        idle = since_ready if idle is None else min(idle, since_ready)
        return max(0.0, slot.profile.ttl - idle)

    def _detach_all(self) -> None:
        """Leave the containers running (the next core adopts them); only stop our own threads."""
        self._shutdown.set()
        for slot in self._slots.values():
            if slot.sup is not None:
                slot.sup.stop.set()
        for engine in self.engines.values():
            engine.events_stop.set()
        self.logbook.close()

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    @property
    def container_id(self) -> str | None:
        """The primary model's container (loading or running), if any."""
        slot = self._primary_slot()
        return slot.sup.container.id if slot is not None and slot.sup is not None else None

    @property
    def current_job(self) -> Job | None:
        return self._active[-1] if self._active else None

    def running_ids(self) -> set[str]:
        """Models with a container (any state but stopped/failed without one)."""
        return {m for m, s in self._slots.items() if s.has_container}

    def slot(self, model: str) -> Slot | None:
        return self._slots.get(model)

    def ready_endpoint(self, model: str) -> str | None:
        """The model's server when it is ready and no job in flight is about to stop it (what the
        endpoint asks before each request: cheap, no status built)."""
        slot = self._slots.get(model)
        if slot is None or slot.state != State.READY or slot.sup is None:
            return None
        if any(model in job.stops for job in self._active if not job.done.is_set()):
            return None
        return self._endpoint(slot)

    def turn_left(self, model: str) -> float:
        """Seconds before a load of `model` on demand may stop the running models it conflicts with.

        A model keeps a turn while requests use it (in flight or queued): as long as its load
        took, at most TURN_MAX. Clients wanting conflicting models then take turns at least as
        long as the loads between them, instead of one load per request (10 clients, 3 models:
        16 loads for 30 requests without turns). The endpoint waits for turns; an explicit switch
        (MCP, CLI) does not. 0 for an unknown model: the switch says why.
        """
        try:
            _, profile = self._profile(model)
        except SwitchError:
            return 0.0
        now, left = self._clock(), 0.0
        for other in self._would_stop(profile):
            slot = self._slots[other]
            busy = self.requests.inflight(other) or self.requests.queued(other)
            if slot.state != State.READY or not slot.load_seconds or not busy:
                continue
            left = max(left, slot.ready_at + min(slot.load_seconds, TURN_MAX) - now)
        return left

    def primary_local(self) -> Slot | None:
        """The primary model's slot when it runs on the local engine (host samples are local)."""
        slot = self._primary_slot()
        return slot if slot is not None and slot.engine == LOCAL else None

    def local_containers(self) -> list[str]:
        """Blocking-safe (called from a sampler thread): ids of the local engine's containers."""
        return list(self.local_models().values())

    def local_models(self) -> dict[str, str]:
        """Model -> container id, for the models on the local engine (their processes are here)."""
        return {s.model: s.sup.container.id for s in list(self._slots.values())
                if s.sup is not None and s.engine == LOCAL}

    # ---- asking for changes -----------------------------------------------------

    def _profile(self, model: str) -> tuple[Config, Profile]:
        try:
            config = self.config()
            return config, config.profile(model)
        except UnknownProfileError as exc:
            raise SwitchError(exc.message, reason="unknown_model", valid=exc.valid,
                              hint="call list_models for the valid ids") from None
        except Exception as exc:  # ConfigError and friends: the running models are untouched
            raise SwitchError(str(exc), reason="config_error",
                              hint="fix models.conf; the running models were not touched") from None

    def _conflicts(self, profile: Profile, models: Iterable[str]) -> list[str]:
        """Which of `models` cannot run beside `profile` (itself included)."""
        out = []
        for model in models:
            if model == profile.id:
                out.append(model)
                continue
            other = self._slot_profile(model)
            if other is None or conflict(profile, other) is not None:
                out.append(model)  # a container of a profile no longer in models.conf: be safe
        return out

    def _slot_profile(self, model: str) -> Profile | None:
        slot = self._slots.get(model)
        if slot is not None and slot.profile is not None:
            return slot.profile
        try:
            return self.config().profiles.get(model)
        except Exception:
            return None

    def _overlapping(self, profile: Profile) -> list[Job]:
        """Jobs in flight that touch a model that conflicts with `profile` (or is it)."""
        return [job for job in self._active if not job.done.is_set()
                and (job.kind in ("stop", "bench") or self._conflicts(profile, job.claims))]

    def _would_stop(self, profile: Profile) -> list[str]:
        running = [m for m, s in self._slots.items() if s.has_container and m != profile.id]
        return self._conflicts(profile, running)

    async def ensure(self, model: str, *, force: bool = False, rollback: bool = True) -> Job:
        """Start (or join) the job that makes `model` ready; returns at once. Await `job.done`."""
        config, profile = self._profile(model)
        joined = self._join_or_refuse(profile, force)
        if joined is not None:
            return joined
        if not force and self.memory_view is not None:
            # Before anything stops: a profile that cannot fit is refused, the models run on.
            fit = await self._preflight(profile)
            if fit.verdict == "wont_fit":
                self.logbook.note(f"switch to {profile.name} refused: {fit.message}", model=profile.id)
                raise WontFit(model, fit)
            joined = self._join_or_refuse(profile, force)  # the world may have moved meanwhile
            if joined is not None:
                return joined
            if fit.verdict == "tight":
                self.logbook.note(f"pre-flight for {profile.name}: {fit.message}; loading anyway",
                                  model=profile.id)
        replacing = self._overlapping(profile)
        stops = self._would_stop(profile)
        job = Job(kind="switch", profile=model, profile_name=profile.name, force=force,
                  rollback=rollback, previous=self._previous(stops, replacing),
                  estimate=self.history.estimate(model), engine=profile.engine)
        job.stops = stops
        job.claims = {model, *stops}
        self._primary = model
        self._begin(job, replacing)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, replacing, self._do_switch, config, profile)
        return job

    switch = ensure  # the socket method and the MCP tool keep their names

    def _join_or_refuse(self, profile: Profile, force: bool) -> Job | None:
        """The job a request joins (or a finished one for a model already ready);
        SwitchRefused while a conflicting job runs (unless force); None: start a new job."""
        overlapping = self._overlapping(profile)
        slot = self._slots.get(profile.id)
        stale = slot is not None and slot.stale_config
        for running in overlapping:
            joinable = running.kind == "switch" or (running.kind == "adopt" and not stale)
            if joinable and running.profile == profile.id and not force:
                return running
        if overlapping and not force:
            raise SwitchRefused(overlapping[0])
        if (not overlapping and slot is not None and slot.state == State.READY and slot.sup is not None
                and not stale):
            return self._finished_job(profile, "already loaded")
        return None

    def _previous(self, stops: list[str], replacing: list[Job]) -> str | None:
        """The model to roll back to, as the single-model job field says it."""
        for job in replacing:
            if job.previous:
                return job.previous
        ready = [m for m in stops if self._slots[m].state == State.READY]
        return ready[0] if ready else (stops[0] if stops else None)

    async def unload(self, model: str, *, force: bool = False, idle: str | None = None) -> Job:
        """Stop one model; the others keep serving. `idle`: why the ttl unloads it (for status)."""
        slot = self._slots.get(model)
        if slot is None or not slot.has_container:
            running = sorted(self.running_ids())
            raise SwitchError(f"'{model}' is not running" + (f"; running: {', '.join(running)}"
                                                             if running else "; nothing is running"),
                              reason="not_running", valid=running,
                              hint="call status to see what runs")
        overlapping = [j for j in self._active if not j.done.is_set()
                       and (j.kind in ("stop", "bench") or model in j.claims)]
        if overlapping and not force:
            if any(j.kind == "unload" and j.profile == model for j in overlapping):
                return next(j for j in overlapping if j.kind == "unload" and j.profile == model)
            raise SwitchRefused(overlapping[0])
        job = Job(kind="unload", profile=model, profile_name=slot.name, force=force, rollback=False,
                  previous=None, estimate=None, engine=slot.engine)
        job.stops, job.claims = [model], {model}
        job.detail = idle or ""
        self._begin(job, overlapping)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, overlapping, self._do_unload, model)
        return job

    async def unload_all(self, *, force: bool = False) -> Job:
        """Stop every model (the `stop` method)."""
        running = [j for j in self._active if not j.done.is_set()]
        if running and not force:
            raise SwitchRefused(running[0])
        stops = sorted(self.running_ids(), key=lambda m: self._slots[m].order)
        job = Job(kind="stop", profile=None, profile_name="", force=force, rollback=False,
                  previous=self._primary if self._primary in stops else (stops[0] if stops else None),
                  estimate=None)
        job.stops, job.claims = stops, set(stops)
        self._begin(job, running)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, running, self._do_stop_all)
        return job

    stop_model = unload_all

    # ---- pre-flight ----------------------------------------------------------------

    async def _preflight(self, profile: Profile) -> Preflight:
        """The profile's estimate against the memory it will have: free now plus what the
        containers it replaces hold. Anything unknown is no refusal: the load says why."""
        if profile.engine != LOCAL:  # NVML and psutil see this machine only
            return fit_unknown(f"no memory figures for engine '{profile.engine}': they are read on "
                               "this machine only")
        try:
            with anyio.move_on_after(PREFLIGHT_TIMEOUT_S):  # a hung engine or driver: no verdict
                return await self.fits.check(profile, await self._memory_now(profile))
            return fit_unknown(f"the memory figures took over {PREFLIGHT_TIMEOUT_S:g} s")
        except Exception as exc:  # a bug or an odd engine answer must never block a switch
            log.exception("pre-flight for %s failed", profile.id)
            return fit_unknown(f"pre-flight failed: {exc}")

    async def _memory_now(self, profile: Profile | None = None,
                          every: Iterable[Profile] = ()) -> MemorySnapshot:
        """Free memory per device, and what the container a switch to `profile` replaces holds.

        Only the first replaced container's memory is added back (the memory view
        measures one); with several replaced, the verdict errs on the side of "tight".
        """
        assert self.memory_view is not None
        if profile is not None:
            stops = self._would_stop(profile)
        else:  # list_models judges every profile against one snapshot: count back only a model
            # that any other profile would replace (one-at-a-time configs), never one that a
            # load runs beside.
            others = list(every)
            stops = [m for m, s in self._slots.items() if s.has_container and s.profile is not None
                     and all(conflict(p, s.profile) is not None for p in others if p.id != m)]
        slot = self._slots[stops[0]] if stops else None
        if slot is None or slot.sup is None:
            return await self.memory_view.snapshot(None)
        return await self.memory_view.snapshot(slot.sup.container.id, slot.name)

    async def update_fits(self, wait: float = 2.0) -> None:
        """Bring list_models' fit verdicts up to date; waits up to ``wait`` s for it (the
        refresh goes on in the background after that, and concurrent callers share one)."""
        if self.memory_view is None or self._tg is None:
            return
        done = self._fits_done
        if done is not None and done.is_set() and time.monotonic() - self._fits_at < FITS_FRESH_S:
            return  # a burst of list_models calls (a monitor, an agent) costs one look
        if done is None or done.is_set():
            done = self._fits_done = anyio.Event()
            self._tg.start_soon(self._refresh_fits, done)
        with anyio.move_on_after(wait):
            await done.wait()

    async def _refresh_fits(self, done: anyio.Event) -> None:
        try:
            profiles = list(self.config().profiles.values())
            await self.fits.refresh(profiles, await self._memory_now(every=profiles))
        except Exception:  # list_models shows the last verdicts (or unknown); never a crash
            log.exception("refreshing the fit verdicts failed")
        finally:
            self._fits_at = time.monotonic()
            done.set()

    # ---- what clients read (core/status_view.py) and the bench (core/bench_job.py) -----

    def status(self) -> dict[str, Any]:
        return status_view.status(self)

    def list_models(self) -> list[dict[str, Any]]:
        return status_view.list_models(self)

    async def bench(self, profile_ids: list[str], settings: BenchSettings, *, force: bool = False,
                    gpu_sample: GpuSampleFn | None = None) -> Job:
        """Start (or join) a bench job (core/bench_job.py)."""
        return await bench_job.bench(self, profile_ids, settings, force=force, gpu_sample=gpu_sample)

    # ---- what clients read ------------------------------------------------------------

    def _primary_slot(self) -> Slot | None:
        if self._primary is not None and self._primary in self._slots:
            return self._slots[self._primary]
        running = [s for s in self._slots.values() if s.has_container]
        return max(running, key=lambda s: s.order) if running else None

    def _endpoint(self, slot: Slot) -> str | None:
        if slot.profile is None and slot.port is None:
            return None
        port = slot.port if slot.port is not None else (slot.profile.port if slot.profile else None)
        if port is None:
            return None
        return f"http://{self._address(slot.engine, slot.profile)}:{port}"

    def _address(self, engine: str, profile: Profile | None) -> str:
        """Where this machine reaches a port the engine published."""
        settings = self._engine_settings.get(engine)
        if engine != LOCAL and settings is not None and settings.address:
            return settings.address
        return client_host(profile.host) if profile is not None else "127.0.0.1"

    # ---- state and events ----------------------------------------------------------

    def _new_slot(self, model: str, profile: Profile | None, engine: str) -> Slot:
        old = self._slots.get(model)
        if old is not None and old.sup is not None:
            raise AssertionError(f"{model} already has a container")  # the scheduler's own bug
        self._order += 1
        slot = Slot(model=model, profile=profile, engine=engine, order=self._order,
                    ready_health=ReadyHealth(self.ready_health_interval,
                                             self.engines[engine].runtime.inspect, self._threads))
        if old is not None:  # a new container starts from rest, whatever the last one said
            slot.state = old.state if old.state in (State.READY, State.FAILED, State.UNREACHABLE) \
                else State.STOPPED
            slot.last_job = old.last_job
        self._slots[model] = slot
        return slot

    def _set_state(self, slot: Slot, state: State, reason: str | None = None, hint: str | None = None,
                   *, code: str | None = None) -> None:
        engine = self.engines.get(slot.engine)
        if (engine is not None and not engine.link.available and engine.link.problem is not None
                and state not in (State.STOPPED, State.FAILED)):
            # While the engine is away that is the news, whatever else happened.
            problem = engine.link.problem
            state, reason, hint, code = State.UNREACHABLE, problem.message, reconnect_hint(problem), \
                DOCKER_UNAVAILABLE
        if state == slot.state and reason == slot.reason and code == slot.code:
            return
        transitions.check(slot.model, slot.state, state)
        if state == State.STARTING and slot.state != State.STARTING:
            slot.starting_at = self._clock()
        if state == State.READY and slot.state != State.READY:
            slot.ready_at = self._clock()
            started, slot.starting_at = slot.starting_at, None
            slot.load_seconds = None if started is None else slot.ready_at - started
        slot.state, slot.reason, slot.hint, slot.code = state, reason, hint, code
        slot.since = time.time()
        if not slot.has_container and state in (State.STOPPED,):
            self._idle_since = slot.since
        self._publish_state(slot)

    def _publish_state(self, slot: Slot, **extra: Any) -> None:
        self.bus.publish("state", {"state": slot.state.value, "reason": slot.reason, "hint": slot.hint,
                                   "reason_code": slot.code, "health": slot.health_status(),
                                   "model": slot.model, "profile": slot.model,
                                   "primary": self._primary, **extra})

    def _phase(self, job: Job, phase: str) -> None:
        if job.phase == phase:
            return
        job.phase = phase
        job.phases.append({"phase": phase, "at": round(job.elapsed(), 3), "time": time.time()})
        self._publish_job(job)

    def _publish_job(self, job: Job) -> None:
        self.bus.publish("job", job.to_dict())

    def _begin(self, job: Job, replacing: list[Job]) -> None:
        for other in replacing:
            if not other.done.is_set():
                other.replaced_by = job.id
                other.scope.cancel()
        self._active.append(job)
        self._jobs[job.id] = job
        if len(self._jobs) > MAX_JOBS_KEPT:
            for old in list(self._jobs)[:50]:
                self._jobs.pop(old, None)
        # Job.phase starts as "queued", so _phase() would skip it: record it by hand.
        job.phases.append({"phase": "queued", "at": round(job.elapsed(), 3), "time": time.time()})
        self._publish_job(job)

    def _finished_job(self, profile: Profile, detail: str) -> Job:
        job = Job(kind="switch", profile=profile.id, profile_name=profile.name, force=False,
                  rollback=False, previous=profile.id, estimate=None, engine=profile.engine)
        job.result, job.detail, job.duration = "ready", detail, 0.0
        job.phase = "ready"
        job.done.set()
        self._jobs[job.id] = job
        return job

    async def _run_job(self, job: Job, replacing: list[Job],
                       body: Callable[..., Awaitable[None]], *args: Any) -> None:
        for other in replacing:
            await other.done.wait()
        if job.kind == "switch":  # what runs now, after the replaced jobs ended
            profile = self._slot_profile(job.profile or "")
            if profile is not None:
                job.stops = self._would_stop(profile)
                job.claims = {profile.id, *job.stops}
        elif job.kind == "stop":
            job.stops = sorted(self.running_ids(), key=lambda m: self._slots[m].order)
            job.claims = set(job.stops)
        target = self._slots.get(job.profile or "") if job.kind in ("switch", "unload", "adopt") else None
        try:
            with job.scope:
                await body(job, *args)
            if job.scope.cancelled_caught and job.result is None:
                job.result = "cancelled"
                job.detail = f"replaced by {job.replaced_by}" if job.replaced_by else "cancelled"
        except EngineUnavailable as exc:
            engine = job.engine if job.engine in self.engines else LOCAL
            adoption.engine_lost(self, engine, exc)
            job.result, job.failure = "failed", outage_failure(exc)
            slot = self._slots.get(job.profile or "")
            if job.phase != "queued" and slot is not None:  # refused before touching anything
                self._set_state(slot, State.FAILED if not slot.has_container else State.UNREACHABLE,
                                job.failure.message, job.failure.hint, code=DOCKER_UNAVAILABLE)
        except RuntimeFailure as exc:  # the engine refused something: its words, not a crash
            log.warning("job %s: %s", job.id, exc)
            job.result = "failed"
            job.failure = Failure("docker_error", f"Docker failed: {exc}",
                                  "`docker info` shows whether the engine is healthy; switch again")
            self._fail_target(job)
        except Exception as exc:  # a bug must never leave a stuck state
            job.result = "failed"
            log.exception("job %s crashed", job.id)
            job.failure = Failure("internal_error", f"llm-mcp hit an internal error: {exc}",
                                  "see the daemon log; the state was reset")
            self._fail_target(job)
        finally:
            self.intent.clear()
            job.duration = time.monotonic() - job.started
            self._phase(job, job.result or "done")
            job.done.set()
            if job.kind != "adopt" or job.result != "cancelled":
                self._last_job = job
                slot = self._slots.get(job.profile or "") or target
                if slot is not None and job.kind in ("switch", "adopt", "unload"):
                    slot.last_job = job
            self._publish_job(job)
            if job in self._active:
                self._active.remove(job)
            self._settle_states(job)

    def _fail_target(self, job: Job) -> None:
        assert job.failure is not None
        slot = self._slots.get(job.profile or "")
        if slot is None:
            slot = self._slots.get(self._primary or "")
        if slot is not None:
            failure = job.failure
            self._set_state(slot, State.FAILED, failure.message, failure.hint, code=failure.reason)

    def _settle_states(self, job: Job) -> None:
        """A job that ended (even by a bug, or cancelled) leaves no model in a passing state,
        and no env file of a model that does not run."""
        for model in job.claims:
            slot = self._slots.get(model)
            if any(model in j.claims for j in self._active if not j.done.is_set()):
                continue
            if slot is None or slot.sup is None:
                self._remove_env_file(self._slot_profile(model))
            if slot is None:
                continue
            if slot.state in (State.STARTING, State.LOADING, State.STOPPING) and slot.sup is None:
                self._set_state(slot, State.STOPPED, "the job ended before it finished",
                                "switch to the model again")

    # ---- the switch itself ---------------------------------------------------------

    async def _do_switch(self, job: Job, config: Config, profile: Profile) -> None:
        adoption.need_engine(self, profile.engine)
        for model in job.stops:
            adoption.need_engine(self, self._slots[model].engine)
        await self._drain(job, [self._slots[m] for m in job.stops], profile.drain_timeout)
        # The models to bring back if this load fails: those that were serving.
        restore = [m for m in job.stops if self._slots[m].state == State.READY and self._slots[m].profile]
        previous = job.previous  # a forced job inherits what the job it replaced had stopped
        if (previous and previous != profile.id and previous not in restore and previous in config.profiles
                and previous not in self.running_ids()
                and conflict(profile, config.profiles[previous]) is not None):
            restore.append(previous)
        self._write_env_file(profile, config.instance)  # before anything stops; never fatal
        for model in job.stops:
            await self._remove(job, self._slots[model])
        self._drop_tombstones(profile)
        own = self._slots.get(profile.id)
        if own is not None and own.sup is not None:  # a stale config or a failed server: restart it
            await self._remove(job, own, keep_env=True)
        self.logbook.separator(f"switching to {profile.name}", model=profile.id)
        failure = await self._start_and_load(job, config, profile)
        if failure is None:
            job.result = "ready"
            return
        job.result = "failed"
        job.failure = failure
        self.logbook.note(f"switch to {profile.name} failed: {failure.message}", model=profile.id)
        slot = self._slots[profile.id]
        if failure.reason == DOCKER_UNAVAILABLE:
            # Nothing can be removed or restored now; the container is adopted when Docker is back.
            self._set_state(slot, State.FAILED, failure.message, failure.hint, code=DOCKER_UNAVAILABLE)
            return
        await self._remove(job, slot, quick=True)
        if not (job.rollback and restore):
            job.restored = False if restore and job.rollback else None
            self._set_state(slot, State.FAILED, failure.message, failure.hint, code=failure.reason)
            return
        self._phase(job, "restoring_previous")
        failed_again: list[tuple[str, Failure]] = []
        for model in restore:
            back = config.profiles.get(model)
            if back is None:
                continue
            self.logbook.separator(f"restoring {back.name}", model=back.id)
            again = await self._start_and_load(job, config, back, restoring=True)
            if again is not None:
                failed_again.append((back.name, again))
                await self._remove(job, self._slots[back.id], quick=True)
                self._set_state(self._slots[back.id], State.FAILED,
                                f"restoring {back.name} after the failed switch to {profile.name} "
                                f"failed: {again.message}", again.hint, code=again.reason)
        job.restored = not failed_again
        if failed_again:
            names = ", ".join(name for name, _ in failed_again)
            self._set_state(slot, State.FAILED, f"{failure.message}; restoring {names} also failed: "
                            f"{failed_again[0][1].message}", failure.hint, code=failure.reason)
            return
        # As the single-model version said it: the restored model is what runs, with the news.
        # It is the primary before any event goes out, so every client reads the same story.
        first = self._slots[restore[0]]
        self._primary = first.model
        names = ", ".join(self._slots[m].name for m in restore)
        # The failed model stays listed with its reason.
        self._set_state(slot, State.FAILED, failure.message, failure.hint, code=failure.reason)
        self._set_state(first, State.READY, f"switch to {profile.name} failed ({failure.reason}); "
                        f"{names} restored", failure.hint)

    def _drop_tombstones(self, profile: Profile) -> None:
        """A new load supersedes the failures and stops it conflicts with."""
        for model in self._conflicts(profile, [m for m, s in self._slots.items() if not s.has_container]):
            if model != profile.id:
                self._slots.pop(model, None)

    async def _do_unload(self, job: Job, model: str) -> None:
        slot = self._slots.get(model)
        if slot is None or slot.sup is None:
            job.result, job.detail = "stopped", "it was not running"
            return
        adoption.need_engine(self, slot.engine)
        if slot.profile is not None:
            await self._drain(job, [slot], slot.profile.drain_timeout)
        await self._remove(job, slot)
        job.result = "stopped"
        if job.detail.startswith("idle for"):  # the ttl: news worth a line in status
            self._set_state(slot, State.STOPPED, f"unloaded: {job.detail}", "the endpoint loads it "
                            "again on the next request", code="ttl_expired")
        else:
            self._set_state(slot, State.STOPPED, "stopped on request")
        if self._primary == model:
            running = [s for s in self._slots.values() if s.has_container]
            if running:
                self._primary = max(running, key=lambda s: s.order).model

    async def _do_stop_all(self, job: Job) -> None:
        slots = [self._slots[m] for m in job.stops if m in self._slots and self._slots[m].has_container]
        for slot in slots:
            adoption.need_engine(self, slot.engine)
        timeout = max((s.profile.drain_timeout for s in slots if s.profile), default=0.0)
        await self._drain(job, slots, timeout)
        for slot in slots:
            await self._remove(job, slot)
            self._set_state(slot, State.STOPPED, "stopped on request")
        for model in [m for m, s in self._slots.items() if not s.has_container]:
            if model != self._primary:
                self._slots.pop(model, None)
        job.result = "stopped"
        primary = self._slots.get(self._primary or "")
        if primary is not None and not primary.has_container:
            self._set_state(primary, State.STOPPED, "stopped on request")
        elif primary is None:
            self._idle_since = time.time()

    def _write_env_file(self, profile: Profile, instance: str) -> None:
        """The compose env files that start the same container by hand (`docker compose up`).

        Only for hand use (the core creates containers through the SDK): a failure to
        write them is a warning in the log, never a reason to fail or half-do a switch.
        """
        try:
            _, env = profile_spec(profile, instance)
        except Exception:
            return  # a broken compose.yaml: the start itself reports it, with the file and line
        try:
            write_env_file(profile.compose_file.parent, env, profile.id)
        except OSError as exc:
            self.logbook.note(f"warning: cannot write {profile.compose_file.parent / '.env'} "
                              f"({exc.strerror or exc}); the switch goes on without it", model=profile.id)

    def _remove_env_file(self, profile: Profile | None) -> None:
        if profile is None:
            return
        try:
            remove_env_file(profile.compose_file.parent, profile.id)
        except OSError as exc:
            log.warning("cannot remove the env file of %s: %s", profile.id, exc)

    def _record_load(self, profile_id: str, seconds: float) -> None:
        """Remember the load time for estimates; a full or read-only state dir only costs that."""
        try:
            self.history.record(profile_id, seconds)
        except OSError as exc:
            first = self._history_error is None
            self._history_error = f"{exc.strerror or exc}: {exc.filename or self.history.path}"
            if first:
                self.logbook.note(f"cannot save load times in {self.history.path} ({exc.strerror or exc})")
            return
        self._history_error = None

    async def _drain(self, job: Job, slots: list[Slot], timeout: float) -> None:
        """Let the models about to stop finish what they generate: the endpoint's requests in
        flight and llama-server's busy slots (bounded by `timeout`; force skips it)."""
        busy_slots = [s for s in slots if s.state == State.READY and s.sup is not None and s.profile]
        if job.force or not busy_slots:
            return
        deadline = time.monotonic() + timeout  # real time: /slots and the requests are real waits
        for slot in busy_slots:
            if self.requests.inflight(slot.model):
                self._phase(job, "draining")
                if not await self.requests.wait_idle(slot.model, deadline - time.monotonic()):
                    self.logbook.note(f"{slot.name} still answering {self.requests.inflight(slot.model)} "
                                      f"request(s) after {timeout:g}s; switching anyway", model=slot.model)
                    continue
            endpoint = self._endpoint(slot)
            if endpoint is None:
                continue
            probe = self.probe_factory(endpoint)
            try:
                while time.monotonic() < deadline:
                    if not await probe.busy_slots():
                        break
                    self._phase(job, "draining")
                    await anyio.sleep(min(0.25, self.health_interval * 2.5))  # 0.25 s by default
                else:
                    self.logbook.note(f"{slot.name} still generating after {timeout:g}s; "
                                      "switching anyway", model=slot.model)
            finally:
                await probe.aclose()

    async def _remove(self, job: Job, slot: Slot, *, quick: bool = False, keep_env: bool = False) -> None:
        """Stop and remove the slot's container; shielded: a half-removed container is the one
        stuck state."""
        sup = slot.sup
        if sup is None:
            return
        if not quick:
            self._phase(job, "stopping_previous")
            self._set_state(slot, State.STOPPING, f"stopping {slot.name}")
        sup.expected_exit = True
        if self.requests.inflight(slot.model):  # past the drain (or forced): say so, not a closed socket
            why = ("a forced switch" if job.force else
                   f"its drain timeout ({slot.profile.drain_timeout:g} s)" if slot.profile else "a stop")
            loading = job.kind == "switch" and job.profile != slot.model
            target = f" to load {job.profile_name}" if loading else ""
            self.requests.cut(slot.model, f"{slot.name} was stopped{target} after {why}; retry the request")
        grace = 0.0 if quick else (slot.profile.stop_grace if slot.profile else 10.0)
        if not quick:  # if we die during the stop, the next daemon can say so
            self.intent.write(SwitchIntent(
                container=sup.container.id, from_profile=slot.profile.id if slot.profile else None,
                from_name=slot.name, to_profile=job.profile if job.kind == "switch" else None,
                to_name=job.profile_name, pid=os.getpid(), time=time.time()))
        runtime = self.engines[slot.engine].runtime
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(runtime.stop_and_remove, sup.container.id, grace,
                                           limiter=self._threads)
        self._forget(slot)
        if not keep_env:  # a restart of the same model keeps the file it just wrote
            self._remove_env_file(slot.profile)
        slot.measured_tps = None
        slot.speed_source = None
        slot.stale_config = False

    async def _start_and_load(self, job: Job, config: Config, profile: Profile,
                              *, restoring: bool = False, since: float | None = None) -> Failure | None:
        """Create, start and wait for ready. Returns why it failed, or None when ready."""
        if not restoring:
            self._phase(job, "starting")
        slot = self._new_slot(profile.id, profile, profile.engine)
        self._set_state(slot, State.STARTING, f"starting {profile.name}")
        try:
            spec, _ = profile_spec(profile, config.instance)
        except Exception as exc:  # ComposeError: say which file and why
            job.detail = str(exc)
            return Failure("compose_error", f"cannot build the container: {exc}",
                           "fix compose.yaml or models.conf; `llm-mcp check` validates both")
        runtime = self.engines[profile.engine].runtime
        # Shielded until the supervisor holds it: a job cancelled in between would leave a
        # container nobody knows (an orphan, and no env file for it).
        with anyio.CancelScope(shield=True):
            try:
                info = await anyio.to_thread.run_sync(runtime.create_and_start, spec, limiter=self._threads)
            except StartError as exc:
                job.detail = exc.detail
                job.log_lines = [exc.detail]
                return exc.failure
            self.intent.clear()  # the new container exists: a next daemon adopts it
            sup = self._attach(slot, info)
        if restoring:
            self._write_env_file(profile, config.instance)
        self._set_state(slot, State.LOADING, f"loading {profile.name}")
        if not restoring:
            self._phase(job, "loading")
        failure = await self._await_ready(job, slot, sup, track_phases=not restoring)
        if failure is not None:
            job.log_lines = [ln.text for ln in self.logbook.tail(25, run="current", model=profile.id)]
            return failure
        load = time.monotonic() - (job.started if since is None else since)
        if not restoring:
            job.load_seconds = round(load, 3)
            self._record_load(profile.id, load)
        self._set_state(slot, State.READY, None)
        self._after_ready(slot, sup, benching=job.kind == "bench")
        return None

    async def _await_ready(self, job: Job, slot: Slot, sup: Supervisor, *,
                           track_phases: bool = True) -> Failure | None:
        assert slot.profile is not None
        profile = slot.profile
        endpoint = self._endpoint(slot)
        assert endpoint is not None
        probe = self.probe_factory(endpoint)
        engine = self.engines[slot.engine]
        started = self._clock()
        last_code: int | None = None
        last_publish = 0.0
        try:
            while True:
                now = self._clock()
                if sup.detached or not engine.link.available:
                    return outage_failure(engine.link.problem)
                if sup.removed:
                    return REMOVED
                if sup.failure is not None or sup.exited.is_set():
                    await sup.settle()
                    if sup.failure is not None and not sup.exited.is_set():
                        # Every known failure exits within milliseconds; a server still
                        # running after the settle printed a scary but harmless line.
                        self.logbook.note(f"ignoring '{sup.failure.reason}' line: the server "
                                          "kept running", model=slot.model)
                        sup.failure = None
                        sup.failure_ignored = True
                        continue
                    if sup.failure is not None:
                        return sup.failure
                    final = sup.final
                    if sup.removed or final is None or final.status == "removing":
                        return REMOVED  # `docker rm -f` kills it: not a crash (signal 9)
                    tail = "\n".join(ln.text for ln in self.logbook.tail(30, run="current", model=slot.model))
                    return match_failure(tail) or exit_failure(final.exit_code, final.oom_killed)
                health = await probe.health()
                slot.health = health
                if health.code != last_code:
                    last_code = health.code
                    sup.progress_at = self._clock()
                if health.status == "ok":
                    await sup.caught_up()
                    sup.watch_failures = False
                    return None
                if track_phases and sup.phase:
                    self._phase(job, sup.phase)
                if now - sup.progress_at > profile.stall_timeout:
                    return STALLED
                if now - started > profile.load_timeout:
                    return TIMED_OUT
                if now - last_publish >= 1.0:  # progress for estimated-percentage displays
                    last_publish = now
                    self._publish_job(job)
                await anyio.sleep(self.health_interval)
        finally:
            await probe.aclose()

    def _after_ready(self, slot: Slot, sup: Supervisor, *, adopted: bool = False,
                     benching: bool = False) -> None:
        assert self._tg is not None and slot.profile is not None
        profile = slot.profile
        endpoint = self._endpoint(slot)
        assert endpoint is not None
        sup.watch_failures = False
        slot.ready_health.start(self._tg, self.probe_factory(endpoint), sup.container,
                                on_change=lambda: self._health_changed(slot),
                                alive=lambda: slot.sup is sup and not sup.exited.is_set())
        bench = None if slot.stale_config else self.bench_store.latest(profile)
        if bench is not None:  # measured properly already: no test completion needed
            slot.measured_tps, slot.speed_source = bench["gen_tps"]["median"], "bench"
            self.logbook.note(f"speed: {bench['gen_tps']['median']:g} t/s from the bench of "
                              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(bench['date']))}; "
                              "no test completion sent", model=slot.model)
        elif adopted:  # someone else's server may be busy: an adopted one is only watched
            self.logbook.note("adopted: no test completion sent (the speed shows once it generates)",
                              model=slot.model)
        elif profile.verify and not benching:
            self._tg.start_soon(self._verify_speed, slot, sup, endpoint)

    def _health_changed(self, slot: Slot) -> None:
        detail = slot.ready_health.detail()
        if detail is not None:
            self.logbook.note(f"health: {detail['status']}"
                              + (f" ({detail['message']})" if detail["message"] else ""), model=slot.model)
        self._publish_state(slot, health_detail=detail)

    async def _verify_speed(self, slot: Slot, sup: Supervisor, endpoint: str) -> None:
        probe = self.probe_factory(endpoint)
        try:
            tps = await probe.measure_speed(slot.model)
        finally:
            await probe.aclose()
        if tps is not None and slot.sup is sup and slot.measured_tps is None:
            slot.measured_tps, slot.speed_source = round(tps, 2), "verification"
            self._publish_state(slot, speed=slot.measured_tps)

    # ---- watching containers -------------------------------------------------------

    def _attach(self, slot: Slot, info: ContainerInfo, *, since: float | None = None,
                resume: bool = False) -> Supervisor:
        sup = Supervisor(container=info, profile=slot.profile, model=slot.model, engine=slot.engine,
                         progress_at=self._clock())
        slot.sup = sup
        slot.port = info.host_port if info.host_port else (slot.profile.port if slot.profile else None)
        self.logbook.begin_run(info.id, slot.model, resume=resume)
        assert self._tg is not None
        self._observers.start(self._tg, sup, self.engines[slot.engine].runtime, since)
        return sup

    def _on_lines(self, sup: Supervisor, batch: list[tuple[str, str]]) -> None:
        slot = self._slots.get(sup.model)
        current = slot is not None and slot.sup is sup
        benching = any(j.kind == "bench" for j in self._active if not j.done.is_set())
        for ts, text in batch:
            if sup.replayed and (ts, text) in sup.replayed:
                sup.replayed.discard((ts, text))
                continue  # already restored from the run file after a daemon restart
            if current:
                self.logbook.append(text, ts or None, flush=False, run=sup.container.id)
            before = sup.last_tps
            sup.observe_line(text, self._clock())
            if (current and slot is not None and sup.last_tps is not None and sup.last_tps != before
                    and slot.speed_source != "verification" and not benching):
                slot.measured_tps, slot.speed_source = sup.last_tps, "log"
        self.logbook.flush()

    async def _container_gone(self, sup: Supervisor, final: ContainerInfo | None, removed: bool) -> None:
        if sup.exited.is_set():
            return
        sup.final = final
        sup.exited.set()
        slot = self._slots.get(sup.model)
        if sup.expected_exit or slot is None or slot.sup is not sup:
            return
        if any(sup.model in j.claims for j in self._active if not j.done.is_set()):
            return  # the job in flight reports it
        await sup.settle()
        if slot.sup is not sup:
            return
        engine = self.engines.get(slot.engine)
        if engine is not None and (not engine.link.available or sup.detached):
            # An engine without live-restore stops its containers as it goes: that is the news.
            self._forget(slot)
            self._remove_env_file(slot.profile)
            where = "Docker" if slot.engine == LOCAL else f"Docker engine '{slot.engine}'"
            self.logbook.note(f"the container stopped with {where}", model=sup.model)
            self._set_state(slot, State.STOPPED, f"the container stopped when {where} did (no "
                            "live-restore)", "switch to the model to start it again once the engine "
                            "answers", code="container_gone")
            return
        removed = removed or sup.removed
        lines = [ln.text for ln in self.logbook.tail(15, run="current", model=sup.model)]
        self._forget(slot)
        self._remove_env_file(slot.profile)
        if removed:
            self.logbook.note("the container was removed outside llm-mcp", model=sup.model)
            self._set_state(slot, State.STOPPED, "the container was removed outside llm-mcp",
                            "switch to a model to start one again", code="container_removed")
            return
        code = final.exit_code if final is not None else None
        if code == 0:
            self.logbook.note("the container stopped outside llm-mcp", model=sup.model)
            self._set_state(slot, State.STOPPED, "the container was stopped outside llm-mcp (exit 0)",
                            code="container_stopped")
            return
        failure = match_failure("\n".join(lines)) or exit_failure(
            code, bool(final.oom_killed) if final is not None else False)
        self.logbook.note(f"llama-server died: {failure.message}", model=sup.model)
        crash = Job(kind="crash", profile=sup.model, profile_name=slot.name, force=False,
                    rollback=False, previous=None, estimate=None, engine=slot.engine)
        crash.result, crash.failure = "failed", failure
        crash.log_lines, crash.duration = lines, 0.0
        crash.done.set()
        self._last_job = slot.last_job = crash
        self._set_state(slot, State.FAILED, failure.message, failure.hint, code=failure.reason)

    def _forget(self, slot: Slot) -> None:
        sup = slot.sup
        if sup is None:
            return
        sup.stop.set()
        self.logbook.end_run(sup.container.id)
        slot.sup = None
        slot.health = None
        slot.ready_health.stop()

