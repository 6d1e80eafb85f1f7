"""The bench job: load each profile, measure it, put back what ran."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from llm_mcp.config.models_conf import Config, Profile, UnknownProfileError
from llm_mcp.core import adoption
from llm_mcp.core.bench_runner import BenchError, BenchSettings, measure, memory_used
from llm_mcp.core.bench_store import spread
from llm_mcp.core.engine_link import (
    DOCKER_UNAVAILABLE,
)
from llm_mcp.core.jobs import Job, SwitchError, SwitchRefused
from llm_mcp.core.preflight import WontFit
from llm_mcp.core.slots import LOCAL
from llm_mcp.core.transitions import State
from llm_mcp.runtime.log_signals import Failure

if TYPE_CHECKING:
    from llm_mcp.core.scheduler import Core

log = logging.getLogger("llm_mcp.bench_job")

GpuSampleFn = Callable[[], Awaitable[dict[str, Any] | None]]  # a fresh GPU sample (NVML), for the bench


async def bench(core: Core, profile_ids: list[str], settings: BenchSettings, *, force: bool = False,
                gpu_sample: GpuSampleFn | None = None) -> Job:
    """Start (or join) a bench job: load each profile, measure it, then restore what ran.

    Joined by the same request (same profiles and settings); refused while another job
    runs, unless force (which cancels that job, as a forced switch does). A bench has the
    engines to itself: it stops whatever conflicts with each profile it measures.
    """
    try:
        config = core.config()
        profiles = [config.profile(pid) for pid in dict.fromkeys(profile_ids)]
    except UnknownProfileError as exc:
        raise SwitchError(exc.message, reason="unknown_model", valid=exc.valid,
                          hint="call list_models for the valid ids") from None
    except Exception as exc:
        raise SwitchError(str(exc), reason="config_error",
                          hint="fix models.conf; the running models were not touched") from None
    wanted = {"profiles": [p.id for p in profiles], "settings": settings.to_dict()}

    def join_or_refuse() -> Job | None:
        running = [j for j in core._active if not j.done.is_set()]
        if not running or force:
            return None
        for job in running:
            if job.kind == "bench" and job.bench is not None and all(
                    job.bench.get(k) == v for k, v in wanted.items()):
                return job  # join
        raise SwitchRefused(running[0])

    if (joined := join_or_refuse()) is not None:
        return joined
    if not force and core.memory_view is not None:
        for profile in profiles:  # before anything stops, as for a switch
            fit = await core._preflight(profile)
            if fit.verdict == "wont_fit":
                core.logbook.note(f"bench refused: {profile.name} {fit.message}", model=profile.id)
                raise WontFit(profile.id, fit)
        if (joined := join_or_refuse()) is not None:  # the world may have moved meanwhile
            return joined
    running = [j for j in core._active if not j.done.is_set()]
    ready_before = [m for m, s in core._slots.items() if s.state == State.READY and s.has_container]
    previous = core._primary if core._primary in ready_before else (ready_before[0] if ready_before
                                                                     else None)
    # A model that ran before goes last: it is then loaded once, not twice.
    profiles.sort(key=lambda p: p.id in ready_before)
    # No estimate: a percentage of the job's elapsed time means nothing across several loads.
    job = Job(kind="bench", profile=profiles[0].id, profile_name=profiles[0].name, force=force,
              rollback=True, previous=previous, estimate=None)
    job.claims = set(config.profiles) | core.running_ids()
    job.bench = {**wanted, "order": [p.id for p in profiles], "index": 0, "step": "queued",
                 "run": 0, "results": {}}
    core._begin(job, running)
    assert core._tg is not None
    core._tg.start_soon(core._run_job, job, running, partial(do_bench, core), config, profiles, settings,
                        gpu_sample)
    return job

def bench_step(core: Core, job: Job, **changes: Any) -> None:
    assert job.bench is not None
    job.bench.update(changes)
    core._publish_job(job)

async def do_bench(core: Core, job: Job, config: Config, profiles: list[Profile],  # noqa: PLR0917
                   settings: BenchSettings, gpu_sample: GpuSampleFn | None) -> None:
    assert job.bench is not None
    restore = [m for m, s in sorted(core._slots.items(), key=lambda kv: kv[1].order)
               if s.state == State.READY and s.has_container and s.profile is not None]
    failures: list[Failure] = []
    for index, profile in enumerate(profiles):
        adoption.need_engine(core, profile.engine)
        job.profile, job.profile_name = profile.id, profile.name
        bench_step(core, job, index=index, step="loading", run=0)
        stops = core._would_stop(profile)
        job.stops = sorted(set(job.stops) | set(stops))
        await core._drain(job, [core._slots[m] for m in stops], profile.drain_timeout)
        for model in stops:
            await core._remove(job, core._slots[model])
        own = core._slots.get(profile.id)
        if own is not None and own.sup is not None:
            await core._remove(job, own)
        core.logbook.separator(f"bench: loading {profile.name}", model=profile.id)
        started = time.monotonic()
        failure = await core._start_and_load(job, config, profile, since=started)
        if failure is None:
            load_seconds = time.monotonic() - started
            failure = await bench_measure(core, job, profile, settings, load_seconds, gpu_sample)
        slot = core._slots[profile.id]
        if failure is not None:
            failures.append(failure)
            job.bench["results"][profile.id] = {"error": failure.message, "reason": failure.reason}
            core.logbook.note(f"bench of {profile.name} failed: {failure.message}", model=profile.id)
            if failure.reason == DOCKER_UNAVAILABLE:
                job.result, job.failure = "failed", failure
                core._set_state(slot, State.FAILED, failure.message, failure.hint,
                                code=DOCKER_UNAVAILABLE)
                return
            await core._remove(job, slot, quick=True)
            core._slots.pop(profile.id, None)
    bench_step(core, job, step="restoring", run=0)
    await bench_restore(core, job, config, restore)
    job.bench["step"] = "done"
    job.load_seconds = None  # each profile's load is in its result; the job's would be the last one's
    job.result = "failed" if failures else "done"
    job.failure = failures[0] if failures else None
    job.detail = (f"measured {len(profiles) - len(failures)} of {len(profiles)} profiles"
                  + (f"; {', '.join(restore)} restored" if job.restored and restore else ""))

async def bench_measure(core: Core, job: Job, profile: Profile,  # noqa: PLR0917
                        settings: BenchSettings, load_seconds: float,
                        gpu_sample: GpuSampleFn | None) -> Failure | None:
    """Measure the ready server and store the result; why it failed, or None."""
    assert job.bench is not None
    core._phase(job, "measuring")
    bench_step(core, job, step="measuring")
    slot = core._slots[profile.id]
    endpoint = core._endpoint(slot)
    assert endpoint is not None
    probe = core.probe_factory(endpoint)
    try:
        part = await measure(probe, settings, on_run=lambda run: bench_step(core, job, run=run))
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
    if slot.sup is not None:
        from llm_mcp.hardware.system import container_stats_from_docker

        runtime = core.engines[slot.engine].runtime
        raw = await anyio.to_thread.run_sync(runtime.stats, slot.sup.container.id, limiter=core._threads)
        container = None if raw is None else container_stats_from_docker(raw).to_dict()
    memory, source = memory_used(gpu, container)
    result = {"date": time.time(), "image": profile.image, **part,
              "load_seconds": spread([load_seconds]), "memory_bytes": memory, "memory_source": source}
    try:
        result = core.bench_store.record(profile, result)
    except OSError as exc:  # the numbers still reach whoever waits for the job
        core.logbook.note(f"cannot save the bench result in {core.bench_store.path} "
                          f"({exc.strerror or exc})")
    job.bench["results"][profile.id] = result
    slot.measured_tps, slot.speed_source = result["gen_tps"]["median"], "bench"
    core.logbook.note(f"bench {profile.name}: load {load_seconds:.2f} s, prompt "
                      f"{result['prompt_tps']['median']:g} t/s, "
                      f"generation {result['gen_tps']['median']:g} t/s", model=profile.id)
    return None

async def bench_restore(core: Core, job: Job, config: Config, restore: list[str]) -> None:
    """Put back what ran before the bench: those models, or nothing."""
    keep = {m for m in restore if (s := core._slots.get(m)) is not None
            and s.state == State.READY and s.has_container}
    for model, slot in list(core._slots.items()):
        if slot.has_container and model not in keep:
            await core._remove(job, slot)
            core._slots.pop(model, None)
    missing = [m for m in restore if m not in keep and m in config.profiles]
    if not restore:
        core._idle_since = time.time()
        core._primary = None
        if job.profile:
            tomb = core._new_slot(job.profile, config.profiles.get(job.profile), LOCAL)
            core._set_state(tomb, State.STOPPED, "bench done; nothing was running before it")
            core._primary = tomb.model
        return
    ok = True
    if missing:
        core._phase(job, "restoring_previous")
    for model in missing:
        back = config.profiles[model]
        core.logbook.separator(f"restoring {back.name}", model=back.id)
        again = await core._start_and_load(job, config, back, restoring=True)
        if again is not None:
            ok = False
            await core._remove(job, core._slots[back.id], quick=True)
            core._set_state(core._slots[back.id], State.FAILED,
                            f"bench done; restoring {back.name} failed: {again.message}",
                            again.hint, code=again.reason)
    job.restored = ok
    core._primary = job.previous

