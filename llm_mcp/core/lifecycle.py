"""The lifecycle core: one llama-server container, switched by jobs, always in a known state.

States: stopped -> starting -> loading -> ready, plus stopping and failed.
A switch is a Job owned by the core, not by whoever asked: a second request for
the same profile joins it, one for another profile is refused (or, with force,
replaces it), and a caller that goes away leaves the job running.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from llm_mcp.config.compose import config_hash, profile_spec, write_env_file
from llm_mcp.config.models_conf import Config, Profile, UnknownProfileError, gpu_layers_value
from llm_mcp.core.bench_runner import BenchError, BenchSettings, measure, memory_used
from llm_mcp.core.bench_store import BenchStore, spread
from llm_mcp.core.engine_link import (
    DOCKER_UNAVAILABLE,
    EngineLink,
    follow_events,
    outage_failure,
    reconnect_hint,
)
from llm_mcp.core.events import EventBus
from llm_mcp.core.fit_board import FitBoard
from llm_mcp.core.jobs import Job, State, SwitchError, SwitchRefused
from llm_mcp.core.line_feed import LineFeed
from llm_mcp.core.load_history import LoadHistory
from llm_mcp.core.log_replay import REPLAY_MARGIN_S, docker_ts_seconds, recent_records
from llm_mcp.core.logbook import Logbook
from llm_mcp.core.memory_view import MemoryView
from llm_mcp.core.preflight import MemorySnapshot, Preflight, WontFit
from llm_mcp.core.preflight import unknown as fit_unknown
from llm_mcp.core.ready_health import ReadyHealth
from llm_mcp.core.switch_intent import IntentFile, SwitchIntent
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable, Runtime, RuntimeFailure, StartError
from llm_mcp.runtime.health import Health, LlamaServerProbe, Probe
from llm_mcp.runtime.log_signals import (
    STALLED,
    TIMED_OUT,
    Failure,
    exit_failure,
    match_failure,
    match_generation_speed,
    match_offload,
    match_phase,
)

__all__ = ["Core", "Job", "Runtime", "State", "SwitchError", "SwitchRefused"]

GpuSampleFn = Callable[[], Awaitable[dict[str, Any] | None]]  # a fresh GPU sample (NVML), for the bench

log = logging.getLogger("llm_mcp.core.lifecycle")

PREFLIGHT_TIMEOUT_S = 5.0  # NVML, docker top and psutil answer in ~30 ms; past this, no verdict
FITS_FRESH_S = 1.0  # list_models reuses verdicts this young (a switch's pre-flight never does)



REMOVED = Failure("container_removed", "the container was removed outside llm-mcp while it was loading",
                  "something ran `docker rm` on it; switch to the model again to start it")


@dataclass(eq=False)
class _Watch:
    """Everything observed about one running container."""

    container: ContainerInfo
    profile: Profile | None
    stop: threading.Event = field(default_factory=threading.Event)
    progress_at: float = field(default_factory=time.monotonic)
    phase: str | None = None
    failure: Failure | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)
    logs_done: anyio.Event = field(default_factory=anyio.Event)  # the log stream ended
    final: Any = None
    expected_exit: bool = False
    removed: bool = False  # Docker said it was destroyed
    failure_ignored: bool = False  # a failure-looking line that did not end the server
    offload: tuple[int, int] | None = None
    replayed: set[tuple[str, str]] = field(default_factory=set)  # lines restored from its run file
    detached: bool = False  # the engine went away: its threads ended; re-attached when it answers
    feed: LineFeed = field(default_factory=LineFeed)  # its log lines, follower thread -> loop


class Core:
    def __init__(
        self,
        *,
        load_config: Callable[[], Config],
        runtime: Runtime,
        state_dir: Path,
        bus: EventBus | None = None,
        probe_factory: Callable[[str], Probe] = LlamaServerProbe,
        health_interval: float = 0.1,
        ready_health_interval: float = 3.0,
        log_capacity: int = 5000,
        memory_view: MemoryView | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_config = load_config
        self.runtime = runtime
        self.state_dir = state_dir
        self.bus = bus or EventBus()
        self.probe_factory = probe_factory
        self.health_interval = health_interval
        self._clock = clock  # a load's stall and timeout; tests move it (memory_runtime.OffsetClock)
        config = load_config()
        self.instance = config.instance
        self.logbook = Logbook(state_dir / "logs" / self.instance, capacity=log_capacity,
                               on_line=lambda ln: self.bus.publish("log", ln.to_dict()))
        self.logbook.restore_history()  # `logs` across daemon restarts: earlier runs first
        self._history_error: str | None = None  # the load history could not be saved
        self.history = LoadHistory(state_dir / f"load-history-{self.instance}.json")
        self.bench_store = BenchStore(state_dir / f"bench-{self.instance}.json")
        self.state = State.STOPPED
        self.state_reason: str | None = None
        self.state_hint: str | None = None
        self.state_code: str | None = None  # a stable code for the reason, when there is one
        self.state_since = time.time()
        self.health: Health | None = None
        self.stale_config = False
        self.measured_tps: float | None = None
        self.speed_source: str | None = None
        self._watch: _Watch | None = None
        self._job: Job | None = None
        self._last_job: Job | None = None
        self._jobs: dict[str, Job] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._threads = anyio.CapacityLimiter(64)
        self._lock = anyio.Lock()  # serialises container changes
        self.engine = EngineLink(runtime.ping, limiter=self._threads)
        self.ready_health = ReadyHealth(ready_health_interval, runtime.inspect, self._threads)
        self.intent = IntentFile(state_dir / f"switch-intent-{self.instance}.json")
        self.started = anyio.Event()
        self._events_stop = threading.Event()
        self._shutdown = threading.Event()  # set when the core stops: ends its Docker waits
        # Pre-flight (docs/fit.md): None switches it off (fit "unknown" in list_models).
        self.memory_view = memory_view
        self.fits = FitBoard(anyio.CapacityLimiter(2))
        self._fits_done: anyio.Event | None = None  # the list_models refresh in flight
        self._fits_at = -FITS_FRESH_S  # when the last one ended (monotonic)

    # ---- public API -------------------------------------------------------------

    def config(self) -> Config:
        return self._load_config()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._watch_docker_events)
            tg.start_soon(self.engine.run, self._engine_back)
            await self._reconcile()
            if self.memory_view is not None:  # read every profile's header now: later looks are free
                tg.start_soon(self.update_fits, 0.0)
            self.started.set()
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._detach_all()
                tg.cancel_scope.cancel()

    def _detach_all(self) -> None:
        """Leave the container running (the next core adopts it); only stop our own threads."""
        self._shutdown.set()
        if self._watch is not None:
            self._watch.stop.set()
        self._events_stop.set()
        self.logbook.close()

    def list_models(self) -> list[dict[str, Any]]:
        config = self.config()
        current = self._watch.profile.id if self._watch and self._watch.profile else None
        out = []
        for profile in config.profiles.values():
            entry = profile.to_dict()
            entry["current"] = profile.id == current
            entry["default"] = profile.id == config.default_profile
            entry["estimated_load_seconds"] = self.history.estimate(profile.id)
            entry["model_present"] = profile.model_path().is_file()
            entry["fit"] = (self.fits.entry(profile.id) if self.memory_view is not None
                            else fit_unknown("no memory figures: pre-flight is off").to_dict())
            entry["measured"] = self.bench_store.latest(profile)
            out.append(entry)
        return out

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    @property
    def container_id(self) -> str | None:
        """The container the core is watching (loading or running), if any."""
        return self._watch.container.id if self._watch is not None else None

    @property
    def current_job(self) -> Job | None:
        return self._job

    async def switch(self, profile_id: str, *, force: bool = False, rollback: bool = True) -> Job:
        """Start (or join) a switch job; returns at once. Await `job.done` to wait."""
        try:
            config = self.config()
            profile = config.profile(profile_id)
        except UnknownProfileError as exc:
            raise SwitchError(exc.message, reason="unknown_model", valid=exc.valid,
                              hint="call list_models for the valid ids") from None
        except Exception as exc:  # ConfigError and friends: the running model is untouched
            raise SwitchError(str(exc), reason="config_error",
                              hint="fix models.conf; the running model was not touched") from None
        joined = self._join_or_refuse(profile, force)
        if joined is not None:
            return joined
        if not force and self.memory_view is not None:
            # Before anything stops: a profile that cannot fit is refused, the model runs on.
            fit = await self._preflight(profile)
            if fit.verdict == "wont_fit":
                self.logbook.note(f"switch to {profile.name} refused: {fit.message}")
                raise WontFit(profile_id, fit)
            joined = self._join_or_refuse(profile, force)  # the world may have moved meanwhile
            if joined is not None:
                return joined
            if fit.verdict == "tight":
                self.logbook.note(f"pre-flight for {profile.name}: {fit.message}; loading anyway")
        running = self._job
        previous = self._good_profile(running)
        job = Job(kind="switch", profile=profile_id, profile_name=profile.name, force=force,
                  rollback=rollback, previous=previous, estimate=self.history.estimate(profile_id))
        self._begin(job, running)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, running, self._do_switch, config, profile)
        return job

    def _join_or_refuse(self, profile: Profile, force: bool) -> Job | None:
        """The job a switch request joins (or the finished one for the profile already ready);
        SwitchRefused while another runs (unless force); None: start a new job."""
        running = self._job
        if running is not None and not running.done.is_set():
            # Join a load of the same profile, including one a restarted core adopted mid-load
            # (unless that container runs an outdated config: then this request restarts it).
            joinable = running.kind == "switch" or (running.kind == "adopt" and not self.stale_config)
            if joinable and running.profile == profile.id and not force:
                return running  # join
            if not force:
                raise SwitchRefused(running)
        elif (self.state == State.READY and self._watch is not None and self._watch.profile
              and self._watch.profile.id == profile.id and not self.stale_config):
            return self._finished_job(profile, "already loaded")
        return None

    async def _preflight(self, profile: Profile) -> Preflight:
        """The profile's estimate against the memory it will have: free now plus what the
        container it replaces holds. Anything unknown is no refusal: the load says why."""
        try:
            with anyio.move_on_after(PREFLIGHT_TIMEOUT_S):  # a hung engine or driver: no verdict
                return await self.fits.check(profile, await self._memory_now())
            return fit_unknown(f"the memory figures took over {PREFLIGHT_TIMEOUT_S:g} s")
        except Exception as exc:  # a bug or an odd engine answer must never block a switch
            log.exception("pre-flight for %s failed", profile.id)
            return fit_unknown(f"pre-flight failed: {exc}")

    async def _memory_now(self) -> MemorySnapshot:
        """Free memory per device, and what the running container (the one a switch replaces) holds."""
        assert self.memory_view is not None
        watch = self._watch
        if watch is None:
            return await self.memory_view.snapshot(None)
        name = watch.profile.name if watch.profile else watch.container.profile
        return await self.memory_view.snapshot(watch.container.id, name)

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
            await self.fits.refresh(self.config().profiles.values(), await self._memory_now())
        except Exception:  # list_models shows the last verdicts (or unknown); never a crash
            log.exception("refreshing the fit verdicts failed")
        finally:
            self._fits_at = time.monotonic()
            done.set()

    async def stop_model(self, *, force: bool = False) -> Job:
        running = self._job
        if running is not None and not running.done.is_set() and not force:
            raise SwitchRefused(running)
        job = Job(kind="stop", profile=None, profile_name="", force=force, rollback=False,
                  previous=self._good_profile(running), estimate=None)
        self._begin(job, running)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, running, self._do_stop)
        return job

    def status(self) -> dict[str, Any]:
        watch = self._watch
        profile = watch.profile if watch else None
        container = watch.container if watch else None
        now = time.time()
        offload = None
        if watch and watch.offload:
            expected = profile.n_gpu_layers if profile else None
            layers, total = watch.offload
            matches = None
            if expected is not None and expected.isdigit():
                matches = layers == min(int(expected), total)
            elif expected in ("all",):
                matches = layers == total
            offload = {"layers": layers, "total": total, "expected": gpu_layers_value(expected),
                       "matches": matches}
        speed = None
        if profile is not None:
            ratio = (self.measured_tps / profile.speed
                     if self.measured_tps is not None and profile.speed else None)
            bench = self.bench_store.latest(profile)
            speed = {"measured_tps": self.measured_tps, "expected_tps": profile.speed,
                     "ratio": None if ratio is None else round(ratio, 3), "source": self.speed_source,
                     "as_expected": None if ratio is None else ratio >= 0.8,
                     "bench_tps": bench["gen_tps"]["median"] if bench else None}
        try:  # valid but risky settings (a non-loopback host); a broken file is reported elsewhere
            config_warnings = list(self.config().warnings)
        except Exception:
            config_warnings = []
        return {
            "instance": self.instance,
            "state": self.state.value,
            "since": self.state_since,
            "reason": self.state_reason,
            "reason_code": self.state_code,
            "hint": self.state_hint,
            "docker": self.engine.to_dict(),
            "profile": profile.to_dict() if profile else None,
            "endpoint": f"http://{_client_host(profile.host)}:{profile.port}" if profile else None,
            "container": None if container is None else {
                "id": container.short_id, "name": getattr(container, "name", ""),
                "image": container.image, "started_at": container.started_at,
                "uptime": None if container.started_at is None else round(now - container.started_at, 1),
            },
            "health": self._health_status(),
            "health_detail": self.ready_health.detail() if self.state == State.READY else None,
            "stale_config": self.stale_config,
            "job": self._job.to_dict() if self._job and not self._job.done.is_set() else None,
            "last_switch": self._last_job.to_dict() if self._last_job else None,
            "speed": speed,
            "offload": offload,
            "state_dir": self._state_dir_status(),
            "config_warnings": config_warnings,
        }

    def _state_dir_status(self) -> dict[str, Any]:
        """Can the daemon write its files (run logs, load history)? A full disk is a state."""
        error = self.logbook.write_error or self._history_error
        return {"path": str(self.state_dir), "writable": error is None, "error": error}

    # ---- state and events ----------------------------------------------------------

    def _health_status(self) -> str | None:
        if self.state == State.READY and self.ready_health.status is not None:
            return self.ready_health.status
        return None if self.health is None else self.health.status

    def _set_state(self, state: State, reason: str | None = None, hint: str | None = None,
                   *, code: str | None = None) -> None:
        if not self.engine.available and self.engine.problem is not None:
            # While the engine is away that is the news, whatever else happened.
            problem = self.engine.problem
            reason, hint, code = problem.message, reconnect_hint(problem), DOCKER_UNAVAILABLE
        if state == self.state and reason == self.state_reason and code == self.state_code:
            return
        self.state, self.state_reason, self.state_hint, self.state_code = state, reason, hint, code
        self.state_since = time.time()
        self.bus.publish("state", {"state": state.value, "reason": reason, "hint": hint,
                                   "reason_code": code, "health": self._health_status(),
                                   "profile": self._watch.profile.id
                                   if self._watch and self._watch.profile else None})

    def _phase(self, job: Job, phase: str) -> None:
        if job.phase == phase:
            return
        job.phase = phase
        job.phases.append({"phase": phase, "at": round(job.elapsed(), 3), "time": time.time()})
        self._publish_job(job)

    def _publish_job(self, job: Job) -> None:
        self.bus.publish("job", job.to_dict())

    def _good_profile(self, running: Job | None) -> str | None:
        """The profile to roll back to: what was ready before the in-flight job, if any."""
        if running is not None and not running.done.is_set():
            return running.previous
        if self.state == State.READY and self._watch and self._watch.profile:
            return self._watch.profile.id
        return None

    def _begin(self, job: Job, replacing: Job | None) -> None:
        if replacing is not None and not replacing.done.is_set():
            replacing.replaced_by = job.id
            replacing.scope.cancel()
        self._job = job
        self._jobs[job.id] = job
        if len(self._jobs) > 200:
            for old in list(self._jobs)[:50]:
                self._jobs.pop(old, None)
        # Job.phase starts as "queued", so _phase() would skip it: record it by hand.
        job.phases.append({"phase": "queued", "at": round(job.elapsed(), 3), "time": time.time()})
        self._publish_job(job)

    def _finished_job(self, profile: Profile, detail: str) -> Job:
        job = Job(kind="switch", profile=profile.id, profile_name=profile.name, force=False,
                  rollback=False, previous=profile.id, estimate=None)
        job.result, job.detail, job.duration = "ready", detail, 0.0
        job.phase = "ready"
        job.done.set()
        self._jobs[job.id] = job
        return job

    async def _run_job(self, job: Job, replacing: Job | None,
                       body: Callable[..., Awaitable[None]], *args: Any) -> None:
        if replacing is not None:
            await replacing.done.wait()
        try:
            with job.scope:
                async with self._lock:
                    await body(job, *args)
            if job.scope.cancelled_caught and job.result is None:
                job.result = "cancelled"
                job.detail = f"replaced by {job.replaced_by}" if job.replaced_by else "cancelled"
        except EngineUnavailable as exc:
            self._engine_lost(exc)
            job.result, job.failure = "failed", outage_failure(exc)
            if job.phase != "queued":  # refused before touching anything: the state stands
                self._set_state(State.FAILED, job.failure.message, job.failure.hint, code=DOCKER_UNAVAILABLE)
        except RuntimeFailure as exc:  # the engine refused something: its words, not a crash
            log.warning("job %s: %s", job.id, exc)
            job.result = "failed"
            job.failure = Failure("docker_error", f"Docker failed: {exc}",
                                  "`docker info` shows whether the engine is healthy; switch again")
            self._set_state(State.FAILED, job.failure.message, job.failure.hint, code="docker_error")
        except Exception as exc:  # a bug must never leave a stuck state
            job.result = "failed"
            log.exception("job %s crashed", job.id)
            job.failure = Failure("internal_error", f"llm-mcp hit an internal error: {exc}",
                                  "see the daemon log; the state was reset")
            self._set_state(State.FAILED, job.failure.message, job.failure.hint, code="internal_error")
        finally:
            self.intent.clear()
            job.duration = time.monotonic() - job.started
            self._phase(job, job.result or "done")
            job.done.set()
            if job.kind != "adopt" or job.result != "cancelled":
                self._last_job = job
            self._publish_job(job)
            if self._job is job:
                self._job = None

    # ---- the switch itself ---------------------------------------------------------

    async def _do_switch(self, job: Job, config: Config, profile: Profile) -> None:
        self._need_engine()
        await self._drain(job, profile)
        self._write_env_file(profile, config.instance)  # before anything stops; never fatal
        await self._remove_current(job)
        self.logbook.separator(f"switching to {profile.name}")
        failure = await self._start_and_load(job, config, profile)
        if failure is None:
            job.result = "ready"
            return
        job.result = "failed"
        job.failure = failure
        self.logbook.note(f"switch to {profile.name} failed: {failure.message}")
        if failure.reason == DOCKER_UNAVAILABLE:
            # Nothing can be removed or restored now; the container is adopted when Docker is back.
            self._set_state(State.FAILED, failure.message, failure.hint, code=DOCKER_UNAVAILABLE)
            return
        await self._remove_current(job, quick=True)
        previous = job.previous
        if job.rollback and previous and previous != profile.id and previous in config.profiles:
            back = config.profiles[previous]
            self._phase(job, "restoring_previous")
            self.logbook.separator(f"restoring {back.name}")
            again = await self._start_and_load(job, config, back, restoring=True)
            job.restored = again is None
            if again is not None:
                await self._remove_current(job, quick=True)
                self._set_state(State.FAILED, f"{failure.message}; restoring {back.name} also "
                                f"failed: {again.message}", failure.hint)
            else:
                self._set_state(State.READY, f"switch to {profile.name} failed ({failure.reason});"
                                f" {back.name} restored", failure.hint)
        else:
            job.restored = False if previous and job.rollback else None
            self._set_state(State.FAILED, failure.message, failure.hint)

    async def _do_stop(self, job: Job) -> None:
        self._need_engine()
        await self._remove_current(job)
        job.result = "stopped"
        self._set_state(State.STOPPED, "stopped on request")

    def _write_env_file(self, profile: Profile, instance: str) -> None:
        """The compose .env that starts the same container by hand (`docker compose up`).

        Only for hand use (the core creates containers through the SDK): a failure to
        write it is a warning in the log, never a reason to fail or half-do a switch.
        """
        try:
            _, env = profile_spec(profile, instance)
        except Exception:
            return  # a broken compose.yaml: the start itself reports it, with the file and line
        try:
            write_env_file(profile.compose_file.parent, env, profile.id)
        except OSError as exc:
            self.logbook.note(f"warning: cannot write {profile.compose_file.parent / '.env'} "
                              f"({exc.strerror or exc}); the switch goes on without it")

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

    async def _drain(self, job: Job, profile: Profile) -> None:
        if job.force or self.state != State.READY or self._watch is None or self._watch.profile is None:
            return
        current = self._watch.profile
        probe = self.probe_factory(f"http://{_client_host(current.host)}:{current.port}")
        try:
            deadline = time.monotonic() + profile.drain_timeout
            while time.monotonic() < deadline:
                busy = await probe.busy_slots()
                if not busy:
                    return
                self._phase(job, "draining")
                await anyio.sleep(0.25)
            self.logbook.note(f"still generating after {profile.drain_timeout:g}s; switching anyway")
        finally:
            await probe.aclose()

    async def _remove_current(self, job: Job, *, quick: bool = False) -> None:
        watch = self._watch
        if watch is None:
            return
        if not quick:
            self._phase(job, "stopping_previous")
            self._set_state(State.STOPPING, f"stopping {watch.profile.name if watch.profile else '?'}")
        watch.expected_exit = True
        grace = 0.0 if quick else (watch.profile.stop_grace if watch.profile else 10.0)
        if not quick:  # if we die during the stop, the next daemon can say so
            self.intent.write(SwitchIntent(
                container=watch.container.id, from_profile=watch.profile.id if watch.profile else None,
                from_name=watch.profile.name if watch.profile else watch.container.profile,
                to_profile=job.profile if job.kind == "switch" else None, to_name=job.profile_name,
                pid=os.getpid(), time=time.time()))
        with anyio.CancelScope(shield=True):  # a half-removed container is the one stuck state
            await anyio.to_thread.run_sync(self.runtime.stop_and_remove, watch.container.id, grace,
                                           limiter=self._threads)
        self._forget(watch)
        self.measured_tps = None
        self.speed_source = None
        self.stale_config = False

    async def _start_and_load(self, job: Job, config: Config, profile: Profile,
                              *, restoring: bool = False, since: float | None = None) -> Failure | None:
        """Create, start and wait for ready. Returns why it failed, or None when ready."""
        if not restoring:
            self._phase(job, "starting")
        self._set_state(State.STARTING, f"starting {profile.name}")
        try:
            spec, _ = profile_spec(profile, config.instance)
        except Exception as exc:  # ComposeError: say which file and why
            job.detail = str(exc)
            return Failure("compose_error", f"cannot build the container: {exc}",
                           "fix compose.yaml or models.conf; `llm-mcp check` validates both")
        try:
            info = await anyio.to_thread.run_sync(self.runtime.create_and_start, spec,
                                                  limiter=self._threads)
        except StartError as exc:
            job.detail = exc.detail
            job.log_lines = [exc.detail]
            return exc.failure
        self.intent.clear()  # the new container exists: a next daemon adopts it
        watch = self._attach(info, profile)
        self.stale_config = False
        self._set_state(State.LOADING, f"loading {profile.name}")
        if not restoring:
            self._phase(job, "loading")
        failure = await self._await_ready(job, watch, profile, track_phases=not restoring)
        if failure is not None:
            job.log_lines = [ln.text for ln in self.logbook.tail(25, run="current")]
            return failure
        load = time.monotonic() - (job.started if since is None else since)
        if not restoring:
            job.load_seconds = round(load, 3)
            self._record_load(profile.id, load)
        else:
            self._write_env_file(profile, config.instance)
        self._set_state(State.READY, None)
        self._after_ready(watch, profile)
        return None

    async def _await_ready(self, job: Job, watch: _Watch, profile: Profile,
                           *, track_phases: bool = True) -> Failure | None:
        probe = self.probe_factory(f"http://{_client_host(profile.host)}:{profile.port}")
        started = self._clock()
        last_code: int | None = None
        last_publish = 0.0
        try:
            while True:
                now = self._clock()
                if watch.detached or not self.engine.available:
                    return outage_failure(self.engine.problem)
                if watch.removed:
                    return REMOVED
                if watch.failure is not None or watch.exited.is_set():
                    await self._settle(watch)
                    if watch.failure is not None and not watch.exited.is_set():
                        # Every known failure exits within milliseconds; a server still
                        # running after the settle printed a scary but harmless line.
                        self.logbook.note(f"ignoring '{watch.failure.reason}' line: the server "
                                          "kept running")
                        watch.failure = None
                        watch.failure_ignored = True
                        continue
                    if watch.failure is not None:
                        return watch.failure
                    final = watch.final
                    if watch.removed or final is None or final.status == "removing":
                        return REMOVED  # `docker rm -f` kills it: not a crash (signal 9)
                    tail = "\n".join(ln.text for ln in self.logbook.tail(30, run="current"))
                    return match_failure(tail) or exit_failure(
                        getattr(final, "exit_code", None), bool(getattr(final, "oom_killed", False)))
                health = await probe.health()
                self.health = health
                if health.code != last_code:
                    last_code = health.code
                    watch.progress_at = self._clock()
                if health.status == "ok":
                    await self._logs_caught_up(watch)
                    return None
                if track_phases and watch.phase:
                    self._phase(job, watch.phase)
                if now - watch.progress_at > profile.stall_timeout:
                    return STALLED
                if now - started > profile.load_timeout:
                    return TIMED_OUT
                if now - last_publish >= 1.0:  # progress for estimated-percentage displays
                    last_publish = now
                    self._publish_job(job)
                await anyio.sleep(self.health_interval)
        finally:
            await probe.aclose()

    @staticmethod
    async def _settle(watch: _Watch) -> None:
        """Let the exit and the last log lines arrive before quoting them.

        Docker reports the exit and streams the log on separate connections: the
        exit often lands first, before the line that says why.
        """
        with anyio.move_on_after(2):
            await watch.exited.wait()
        if watch.exited.is_set():
            with anyio.move_on_after(1):
                await watch.logs_done.wait()

    def _after_ready(self, watch: _Watch, profile: Profile, *, adopted: bool = False) -> None:
        assert self._tg is not None
        probe = self.probe_factory(f"http://{_client_host(profile.host)}:{profile.port}")
        self.ready_health.start(self._tg, probe, watch.container, on_change=self._health_changed,
                                alive=lambda: self._watch is watch and not watch.exited.is_set())
        bench = None if self.stale_config else self.bench_store.latest(profile)
        if bench is not None:  # measured properly already: no test completion needed
            self.measured_tps, self.speed_source = bench["gen_tps"]["median"], "bench"
            self.logbook.note(f"speed: {bench['gen_tps']['median']:g} t/s from the bench of "
                              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(bench['date']))}; "
                              "no test completion sent")
        elif adopted:  # someone else's server may be busy: an adopted one is only watched
            self.logbook.note("adopted: no test completion sent (the speed shows once it generates)")
        elif profile.verify and not (self._job is not None and self._job.kind == "bench"):
            self._tg.start_soon(self._verify_speed, watch, profile)

    def _health_changed(self) -> None:
        detail = self.ready_health.detail()
        if detail is not None:
            self.logbook.note(f"health: {detail['status']}"
                              + (f" ({detail['message']})" if detail["message"] else ""))
        self.bus.publish("state", {"state": self.state.value, "reason": self.state_reason,
                                   "hint": self.state_hint, "reason_code": self.state_code,
                                   "health": self._health_status(), "health_detail": detail,
                                   "profile": self._watch.profile.id
                                   if self._watch and self._watch.profile else None})

    async def _verify_speed(self, watch: _Watch, profile: Profile) -> None:
        probe = self.probe_factory(f"http://{_client_host(profile.host)}:{profile.port}")
        try:
            tps = await probe.measure_speed(profile.id)
        finally:
            await probe.aclose()
        if tps is not None and self._watch is watch and self.measured_tps is None:
            self.measured_tps, self.speed_source = round(tps, 2), "verification"
            self.bus.publish("state", {"state": self.state.value, "speed": self.measured_tps,
                                       "profile": profile.id})

    # ---- bench: measured speed per profile ----------------------------------------------

    async def bench(self, profile_ids: list[str], settings: BenchSettings, *, force: bool = False,
                    gpu_sample: GpuSampleFn | None = None) -> Job:
        """Start (or join) a bench job: load each profile, measure it, then restore what ran.

        Joined by the same request (same profiles and settings); refused while another job
        runs, unless force (which cancels that job, as a forced switch does).
        """
        try:
            config = self.config()
            profiles = [config.profile(pid) for pid in dict.fromkeys(profile_ids)]
        except UnknownProfileError as exc:
            raise SwitchError(exc.message, reason="unknown_model", valid=exc.valid,
                              hint="call list_models for the valid ids") from None
        except Exception as exc:
            raise SwitchError(str(exc), reason="config_error",
                              hint="fix models.conf; the running model was not touched") from None
        wanted = {"profiles": [p.id for p in profiles], "settings": settings.to_dict()}

        def join_or_refuse() -> Job | None:
            running = self._job
            if running is None or running.done.is_set() or force:
                return None
            if running.kind == "bench" and running.bench is not None and all(
                    running.bench.get(k) == v for k, v in wanted.items()):
                return running  # join
            raise SwitchRefused(running)

        if (joined := join_or_refuse()) is not None:
            return joined
        if not force and self.memory_view is not None:
            for profile in profiles:  # before anything stops, as for a switch
                fit = await self._preflight(profile)
                if fit.verdict == "wont_fit":
                    self.logbook.note(f"bench refused: {profile.name} {fit.message}")
                    raise WontFit(profile.id, fit)
            if (joined := join_or_refuse()) is not None:  # the world may have moved meanwhile
                return joined
        running = self._job
        previous = self._good_profile(running)
        # The model that ran before goes last: it is then loaded once, not twice.
        profiles.sort(key=lambda p: p.id == previous)
        # No estimate: a percentage of the job's elapsed time means nothing across several loads.
        job = Job(kind="bench", profile=profiles[0].id, profile_name=profiles[0].name, force=force,
                  rollback=True, previous=previous, estimate=None)
        job.bench = {**wanted, "order": [p.id for p in profiles], "index": 0, "step": "queued",
                     "run": 0, "results": {}}
        self._begin(job, running)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, running, self._do_bench, config, profiles, settings,
                            gpu_sample)
        return job

    def _bench_step(self, job: Job, **changes: Any) -> None:
        assert job.bench is not None
        job.bench.update(changes)
        self._publish_job(job)

    async def _do_bench(self, job: Job, config: Config, profiles: list[Profile], settings: BenchSettings,
                        gpu_sample: GpuSampleFn | None) -> None:
        assert job.bench is not None
        self._need_engine()
        await self._drain(job, profiles[0])
        failures: list[Failure] = []
        for index, profile in enumerate(profiles):
            job.profile, job.profile_name = profile.id, profile.name
            self._bench_step(job, index=index, step="loading", run=0)
            await self._remove_current(job)
            self.logbook.separator(f"bench: loading {profile.name}")
            started = time.monotonic()
            failure = await self._start_and_load(job, config, profile, since=started)
            if failure is None:
                load_seconds = time.monotonic() - started
                failure = await self._bench_measure(job, profile, settings, load_seconds, gpu_sample)
            if failure is not None:
                failures.append(failure)
                job.bench["results"][profile.id] = {"error": failure.message, "reason": failure.reason}
                self.logbook.note(f"bench of {profile.name} failed: {failure.message}")
                if failure.reason == DOCKER_UNAVAILABLE:
                    job.result, job.failure = "failed", failure
                    self._set_state(State.FAILED, failure.message, failure.hint, code=DOCKER_UNAVAILABLE)
                    return
                await self._remove_current(job, quick=True)
        self._bench_step(job, step="restoring", run=0)
        await self._bench_restore(job, config)
        job.bench["step"] = "done"
        job.load_seconds = None  # each profile's load is in its result; the job's would be the last one's
        job.result = "failed" if failures else "done"
        job.failure = failures[0] if failures else None
        job.detail = (f"measured {len(profiles) - len(failures)} of {len(profiles)} profiles"
                      + (f"; {job.previous} restored" if job.restored else ""))

    async def _bench_measure(self, job: Job, profile: Profile, settings: BenchSettings, load_seconds: float,
                             gpu_sample: GpuSampleFn | None) -> Failure | None:
        """Measure the ready server and store the result; why it failed, or None."""
        assert job.bench is not None
        self._phase(job, "measuring")
        self._bench_step(job, step="measuring")
        probe = self.probe_factory(f"http://{_client_host(profile.host)}:{profile.port}")
        try:
            part = await measure(probe, settings, on_run=lambda run: self._bench_step(job, run=run))
        except BenchError as exc:
            return Failure("bench_failed", str(exc), "see `llm-mcp logs`; the other profiles were measured")
        finally:
            await probe.aclose()
        gpu = None
        if gpu_sample is not None:
            try:
                gpu = await gpu_sample()
            except Exception:  # no GPU numbers: the container's memory stands in
                log.exception("GPU sample for the bench failed")
        container = None
        container_id = self.container_id
        if container_id is not None:
            from llm_mcp.hardware.system import container_stats_from_docker

            raw = await anyio.to_thread.run_sync(self.runtime.stats, container_id, limiter=self._threads)
            container = None if raw is None else container_stats_from_docker(raw).to_dict()
        memory, source = memory_used(gpu, container)
        result = {"date": time.time(), "image": profile.image, **part,
                  "load_seconds": spread([load_seconds]), "memory_bytes": memory, "memory_source": source}
        try:
            result = self.bench_store.record(profile, result)
        except OSError as exc:  # the numbers still reach whoever waits for the job
            self.logbook.note(f"cannot save the bench result in {self.bench_store.path} "
                              f"({exc.strerror or exc})")
        job.bench["results"][profile.id] = result
        self.measured_tps, self.speed_source = result["gen_tps"]["median"], "bench"
        self.logbook.note(f"bench {profile.name}: load {load_seconds:.2f} s, prompt "
                          f"{result['prompt_tps']['median']:g} t/s, "
                          f"generation {result['gen_tps']['median']:g} t/s")
        return None

    async def _bench_restore(self, job: Job, config: Config) -> None:
        """Put back what ran before the bench: that model, or nothing."""
        previous = job.previous
        current = self._watch.profile.id if self._watch and self._watch.profile else None
        if previous is not None and previous == current and self.state == State.READY:
            job.restored = True
            return
        if previous is None or previous not in config.profiles:
            await self._remove_current(job)
            self._set_state(State.STOPPED, "bench done; nothing was running before it")
            return
        back = config.profiles[previous]
        self._phase(job, "restoring_previous")
        await self._remove_current(job)
        self.logbook.separator(f"restoring {back.name}")
        again = await self._start_and_load(job, config, back, restoring=True)
        job.restored = again is None
        if again is not None:
            await self._remove_current(job, quick=True)
            self._set_state(State.FAILED, f"bench done; restoring {back.name} failed: {again.message}",
                            again.hint, code=again.reason)

    # ---- watching a container ---------------------------------------------------------

    def _attach(self, info: Any, profile: Profile | None, *, since: float | None = None,
                resume: bool = False) -> _Watch:
        watch = _Watch(container=info, profile=profile, progress_at=self._clock())
        self._watch = watch
        self.logbook.begin_run(info.id, profile.id if profile else info.profile or "unknown",
                               resume=resume)
        assert self._tg is not None
        self._tg.start_soon(self._follow_logs, watch, since)
        self._tg.start_soon(self._wait_exit, watch)
        return watch

    async def _follow_logs(self, watch: _Watch, since: float | None) -> None:
        feed = watch.feed

        def on_line(ts: str, text: str) -> None:
            if not feed.put(ts, text):
                watch.stop.set()  # the event loop is gone

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume_log_lines, watch)
                try:
                    await anyio.to_thread.run_sync(self.runtime.follow_logs, watch.container.id,
                                                   on_line, watch.stop, since, limiter=self._threads,
                                                   abandon_on_cancel=True)
                finally:
                    feed.finish()  # the consumer hands over what is left, then ends
        finally:
            watch.logs_done.set()

    async def _consume_log_lines(self, watch: _Watch) -> None:
        while (batch := await watch.feed.next_batch()) is not None:
            for ts, text in batch:
                self._on_log_line(watch, ts, text)
            self.logbook.flush()
            watch.feed.handled()

    async def _logs_caught_up(self, watch: _Watch, timeout: float = 1.0) -> None:
        """Before reporting ready: let the lines already printed reach the log.

        /health can answer 200 before the follower delivered the last load lines, and a
        tail_logs right after the switch would miss them. Done when the server said it
        is loaded (or the stream went quiet) and the follower handed over all it had.
        """
        with anyio.move_on_after(timeout):
            while not (watch.feed.empty() and (watch.phase in ("model_loaded", "listening")
                                               or watch.feed.quiet_for() >= 0.1)):
                await anyio.sleep(0.01)

    def _on_log_line(self, watch: _Watch, ts: str, text: str) -> None:
        if watch.replayed and (ts, text) in watch.replayed:
            watch.replayed.discard((ts, text))
            return  # already restored from the run file after a daemon restart
        if self._watch is watch:
            self.logbook.append(text, ts or None, flush=False)  # the batch flushes the file
        watch.progress_at = self._clock()
        phase = match_phase(text)
        if phase:
            watch.phase = phase
        if watch.failure is None and not watch.failure_ignored and self.state != State.READY:
            watch.failure = match_failure(text)
        offload = match_offload(text)
        if offload:
            watch.offload = offload
        tps = match_generation_speed(text)
        benching = self._job is not None and self._job.kind == "bench"  # its runs are not live use
        if tps is not None and self._watch is watch and self.speed_source != "verification" and not benching:
            self.measured_tps, self.speed_source = tps, "log"

    async def _wait_exit(self, watch: _Watch) -> None:
        while True:
            try:
                final = await anyio.to_thread.run_sync(self.runtime.wait, watch.container.id,
                                                       self._shutdown, limiter=self._threads,
                                                       abandon_on_cancel=True)
            except EngineUnavailable as exc:
                if not self._shutdown.is_set():
                    self._engine_lost(exc)
                return
            except RuntimeFailure as exc:  # the engine answered an error: ask again
                log.warning("waiting for %s: %s", watch.container.short_id, exc)
                await anyio.sleep(1)
                continue
            break
        if self._shutdown.is_set() or watch.detached:
            return  # the core is going away (the container stays), or the engine did
        # `docker rm -f` marks the container "removing" before it kills it: a removal, not a crash.
        await self._container_gone(watch, final, final is None or final.status == "removing")

    async def _container_gone(self, watch: _Watch, final: ContainerInfo | None, removed: bool) -> None:
        if watch.exited.is_set():
            return
        watch.final = final
        watch.exited.set()
        if watch.expected_exit or self._watch is not watch:
            return
        job = self._job
        if job is not None and not job.done.is_set():
            return  # the job in flight reports it
        await self._settle(watch)
        removed = removed or watch.removed
        lines = [ln.text for ln in self.logbook.tail(15, run="current")]
        self._forget(watch)
        if removed:
            self.logbook.note("the container was removed outside llm-mcp")
            self._set_state(State.STOPPED, "the container was removed outside llm-mcp",
                            "switch to a model to start one again", code="container_removed")
            return
        code = getattr(final, "exit_code", None)
        if code == 0:
            self.logbook.note("the container stopped outside llm-mcp")
            self._set_state(State.STOPPED, "the container was stopped outside llm-mcp (exit 0)",
                            code="container_stopped")
            return
        failure = match_failure("\n".join(lines)) or exit_failure(
            code, bool(getattr(final, "oom_killed", False)))
        self.logbook.note(f"llama-server died: {failure.message}")
        self._last_job = Job(kind="crash", profile=watch.profile.id if watch.profile else None,
                             profile_name=watch.profile.name if watch.profile else "", force=False,
                             rollback=False, previous=None, estimate=None)
        self._last_job.result, self._last_job.failure = "failed", failure
        self._last_job.log_lines, self._last_job.duration = lines, 0.0
        self._last_job.done.set()
        self._set_state(State.FAILED, failure.message, failure.hint, code=failure.reason)

    def _forget(self, watch: _Watch) -> None:
        watch.stop.set()
        if self._watch is watch:
            self.logbook.end_run()
            self._watch = None
            self.health = None
            self.ready_health.stop()

    async def _watch_docker_events(self) -> None:
        """Notice containers that die or vanish behind our back within a second."""
        def on_event(action: str, container_id: str) -> None:
            if action in ("die", "destroy", "kill", "stop"):
                try:
                    anyio.from_thread.run_sync(self._on_docker_event, action, container_id)
                except RuntimeError:
                    self._events_stop.set()  # the event loop is gone

        def stopper() -> threading.Event:
            self._events_stop = threading.Event()
            return self._events_stop

        await follow_events(self.runtime, self.engine, on_event, stopper, self._shutdown,
                            lost=self._engine_lost, limiter=self._threads)

    def _on_docker_event(self, action: str, container_id: str) -> None:
        watch = self._watch
        if watch is None or watch.container.id != container_id or action != "destroy":
            return
        watch.removed = True
        assert self._tg is not None
        self._tg.start_soon(self._container_gone, watch, None, True)

    # ---- the engine going away and coming back ------------------------------------------

    def _engine_lost(self, problem: EngineUnavailable) -> None:
        """Say so, and let go of the container: its threads end; it is adopted again later."""
        if not self.engine.lost(problem):
            return
        self.logbook.note(f"Docker stopped answering ({problem.message}); reconnecting by itself")
        watch = self._watch
        if watch is not None:
            watch.detached = True
            watch.stop.set()
        self._set_state(self.state)  # the reason becomes the outage (see _set_state)

    def _need_engine(self) -> None:
        problem = self.engine.problem
        if not self.engine.available and problem is not None:
            self.engine.poke()  # someone wants it: try now rather than after the pause
            raise EngineUnavailable(problem.message, hint=problem.hint, detail=problem.detail)

    async def _engine_back(self) -> None:
        self.logbook.note("Docker answers again")
        async with self._lock:  # never beside a job's container changes
            known = self._watch
            if known is not None and not known.detached:
                return  # a job attached what runs while we waited for the lock
            try:
                await self._reconcile(after_outage=True)
            except Exception as exc:  # e.g. models.conf broken meanwhile: report, never crash
                log.exception("adopting after the outage failed")
                self._set_state(State.FAILED, f"llm-mcp could not adopt the container: {exc}",
                                "fix the cause (see the daemon log); switch to a model to go on",
                                code="internal_error")

    # ---- adoption --------------------------------------------------------------

    async def _reconcile(self, *, after_outage: bool = False) -> None:
        """Adopt our running container (no reload), clear leftovers, or start stopped."""
        known = self._watch
        try:
            containers = await anyio.to_thread.run_sync(self.runtime.managed, limiter=self._threads)
            intent = None if after_outage else self.intent.read()
            dying = intent.container if intent else None  # the one a dead daemon was stopping
            running = [c for c in containers if c.running and c.id != dying]
            keep = running[0] if running else None
            for other in containers:
                if other is not keep:
                    await anyio.to_thread.run_sync(self.runtime.stop_and_remove, other.id, 0.0,
                                                   limiter=self._threads)
        except EngineUnavailable as exc:
            self._engine_lost(exc)
            self._set_state(self.state if known else State.STOPPED)
            return
        if known is not None and (keep is None or keep.id != known.container.id):
            self._forget(known)
            self.logbook.note(f"container {known.container.short_id} ended while Docker was away")
        self.intent.clear()
        if keep is None:
            if intent is not None:
                self.logbook.note(f"{intent.sentence()}; nothing is running")
                self._set_state(State.STOPPED, f"{intent.sentence()}; nothing is running",
                                "switch to a model to start one", code="switch_interrupted")
            elif known is not None:
                self._set_state(State.STOPPED, "the container ended while Docker was not answering",
                                "switch to a model to start one", code="container_gone")
            else:
                self._set_state(State.STOPPED, None)
            return
        await self._adopt(keep, same_run=known is not None and keep.id == known.container.id)

    async def _adopt(self, keep: ContainerInfo, *, same_run: bool) -> None:
        config = self.config()
        profile = config.profiles.get(keep.profile)
        if same_run:  # this core saw its lines already: only re-read the ones it may have missed
            since, replayed = recent_records(self.logbook.run_file(keep.id))
        else:
            restored = self.logbook.restore_run(keep.id)
            latest = docker_ts_seconds(restored.latest) if restored.latest else None
            # Re-read a margin before the newest saved line: stdout and stderr lines are not
            # saved in timestamp order. The replayed set drops what is already there.
            since = max(0.0, latest - REPLAY_MARGIN_S) if latest is not None else None
            replayed = restored.records
        watch = self._attach(keep, profile, since=since, resume=True)
        watch.replayed = replayed
        self.logbook.note(f"adopted running container {keep.short_id} ({keep.profile})")
        if profile is None:
            self.stale_config = True
            self._set_state(State.READY, f"running '{keep.profile}', which is no longer in "
                            "models.conf", "switch to a current profile", code="unknown_profile")
            return
        self.stale_config = config_hash(profile, config.instance) != keep.config_hash
        probe = self.probe_factory(f"http://{_client_host(profile.host)}:{profile.port}")
        try:
            self.health = await probe.health()
        finally:
            await probe.aclose()
        if self.health.status == "ok" or keep.status == "paused":
            # Loaded already: adopted at once, no job that would make a switch wait or be refused.
            self._adopted_ready(watch, profile)
            return
        job = Job(kind="adopt", profile=keep.profile, profile_name=profile.name,
                  force=False, rollback=False, previous=None,
                  estimate=self.history.estimate(keep.profile))
        self._begin(job, None)
        assert self._tg is not None
        self._tg.start_soon(self._run_job, job, None, self._do_adopt, watch, profile)

    def _adopted_ready(self, watch: _Watch, profile: Profile) -> None:
        stale = "running with a stale config: models.conf changed since it started"
        self._set_state(State.READY, stale if self.stale_config else None,
                        "switch to the profile again to apply the new config" if self.stale_config
                        else None, code="stale_config" if self.stale_config else None)
        self._after_ready(watch, profile, adopted=True)

    async def _do_adopt(self, job: Job, watch: _Watch, profile: Profile) -> None:
        self._phase(job, "loading")
        self._set_state(State.LOADING, f"loading {profile.name} (adopted)")
        failure = await self._await_ready(job, watch, profile)
        if failure is None:
            job.result = "ready"
            self._adopted_ready(watch, profile)
            return
        job.result, job.failure = "failed", failure
        job.log_lines = [ln.text for ln in self.logbook.tail(25, run="current")]
        if failure.reason == DOCKER_UNAVAILABLE:
            self._set_state(State.FAILED, failure.message, failure.hint, code=DOCKER_UNAVAILABLE)
            return
        await self._remove_current(job, quick=True)
        self._set_state(State.FAILED, failure.message, failure.hint, code=failure.reason)


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
