"""Engines going away and coming back, and adopting the containers they run."""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from llm_mcp.config.compose import config_hash
from llm_mcp.core.engine_link import (
    DOCKER_UNAVAILABLE,
    follow_events,
)
from llm_mcp.core.jobs import Job
from llm_mcp.core.log_replay import REPLAY_MARGIN_S, docker_ts_seconds, recent_records
from llm_mcp.core.slots import LOCAL, Engine, Slot
from llm_mcp.core.supervisor import Supervisor
from llm_mcp.core.switch_intent import SwitchIntent
from llm_mcp.core.transitions import State
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable

if TYPE_CHECKING:
    from llm_mcp.core.scheduler import Core

log = logging.getLogger("llm_mcp.adoption")


async def watch_docker_events(core: Core, engine: Engine) -> None:
    """Notice containers that die or vanish behind our back within a second."""
    def on_event(action: str, container_id: str) -> None:
        if action in ("die", "destroy", "kill", "stop"):
            try:
                anyio.from_thread.run_sync(partial(on_docker_event, core), engine.name, action, container_id)
            except RuntimeError:
                engine.events_stop.set()  # the event loop is gone

    def stopper() -> threading.Event:
        engine.events_stop = threading.Event()
        return engine.events_stop

    await follow_events(engine.runtime, engine.link, on_event, stopper, core._shutdown,
                        lost=lambda exc: engine_lost(core, engine.name, exc), limiter=core._threads)

def on_docker_event(core: Core, engine: str, action: str, container_id: str) -> None:
    if action != "destroy":
        return
    for slot in core._slots.values():
        sup = slot.sup
        if sup is not None and sup.engine == engine and sup.container.id == container_id:
            sup.removed = True
            assert core._tg is not None
            core._tg.start_soon(core._container_gone, sup, None, True)

# ---- engines going away and coming back -------------------------------------------

def engine_lost(core: Core, name: str, problem: EngineUnavailable) -> None:
    """Say so, and let go of its containers: their threads end; they are adopted again later."""
    engine = core.engines.get(name)
    if engine is None or not engine.link.lost(problem):
        return
    core.logbook.note(f"Docker engine '{name}' stopped answering ({problem.message}); "
                      "reconnecting by itself" if name != LOCAL else
                      f"Docker stopped answering ({problem.message}); reconnecting by itself")
    for slot in core._slots.values():
        if slot.engine != name:
            continue
        if slot.sup is not None:
            slot.sup.detached = True
            slot.sup.stop.set()
        if slot.has_container:
            core._set_state(slot, slot.state)  # becomes unreachable (see _set_state)

def need_engine(core: Core, name: str) -> None:
    engine = core.engines.get(name)
    if engine is None:
        raise EngineUnavailable(f"no Docker engine named '{name}' is connected",
                                hint="add an [engine NAME] section to models.conf and restart the daemon")
    problem = engine.link.problem
    if not engine.link.available and problem is not None:
        engine.link.poke()  # someone wants it: try now rather than after the pause
        raise EngineUnavailable(problem.message, hint=problem.hint, detail=problem.detail)

async def engine_back(core: Core, engine: Engine) -> None:
    core.logbook.note("Docker answers again" if engine.name == LOCAL
                      else f"Docker engine '{engine.name}' answers again")
    try:
        await reconcile(core, engine, None, after_outage=True)
    except Exception as exc:  # e.g. models.conf broken meanwhile: report, never crash
        log.exception("adopting after the outage failed")
        for slot in core._slots.values():
            if slot.engine == engine.name and slot.state == State.UNREACHABLE:
                core._set_state(slot, State.FAILED, f"llm-mcp could not adopt the container: {exc}",
                                "fix the cause (see the daemon log); switch to the model to go on",
                                code="internal_error")

# ---- adoption --------------------------------------------------------------

async def reconcile(core: Core, engine: Engine, intent: SwitchIntent | None, *,
                     after_outage: bool = False) -> None:
    """Adopt this engine's running containers (no reload), clear leftovers."""
    claimed = {m for j in core._active if not j.done.is_set() for m in j.claims}
    known = {s.sup.container.id: s for s in core._slots.values()
             if s.sup is not None and s.engine == engine.name}
    try:
        containers = await anyio.to_thread.run_sync(engine.runtime.managed, limiter=core._threads)
        dying = intent.container if intent else None  # the one a dead daemon was stopping
        keep: dict[str, ContainerInfo] = {}
        # Newest first; a container that conflicts with one already kept (two models that may
        # not run together, left by hand or by an older models.conf) is a leftover too.
        for info in sorted(containers, key=lambda c: c.started_at or 0, reverse=True):
            if not info.running or info.id == dying or info.profile in keep:
                continue
            profile = core._slot_profile(info.profile)
            if profile is not None and core._conflicts(profile, [m for m in keep if m != info.profile]):
                continue
            keep[info.profile] = info
        keep_ids = {c.id for c in keep.values()}
        for other in containers:
            if other.id in keep_ids or other.profile in claimed:
                continue
            await anyio.to_thread.run_sync(engine.runtime.stop_and_remove, other.id, 0.0,
                                           limiter=core._threads)
            if other.id in known:
                slot = known[other.id]
                core._forget(slot)
                core._remove_env_file(slot.profile)
                core.logbook.note(f"container {other.short_id} ended while Docker was away",
                                  model=slot.model)
                core._set_state(slot, State.STOPPED, "the container ended while Docker was not "
                                "answering", "switch to the model to start it again",
                                code="container_gone")
    except EngineUnavailable as exc:
        engine_lost(core, engine.name, exc)
        return
    for container_id, slot in known.items():
        if container_id in keep_ids or slot.model in claimed or slot.sup is None:
            continue
        core._forget(slot)
        core._remove_env_file(slot.profile)
        core.logbook.note(f"container {container_id[:12]} ended while Docker was away", model=slot.model)
        core._set_state(slot, State.STOPPED, "the container ended while Docker was not answering",
                        "switch to the model to start it again", code="container_gone")
    for model, info in keep.items():
        mine = core._slots.get(model)
        if model in claimed and not (mine is not None and mine.sup is not None
                                     and mine.sup.container.id == info.id):
            continue  # a job in flight owns this model now
        await adopt(core, engine, info, same_run=info.id in known)
    if not keep and intent is not None and not after_outage and engine.name == LOCAL:
        profile = core._slot_profile(intent.from_profile or "")
        model = intent.from_profile or intent.to_profile or "?"
        if model not in core._slots:
            tomb = core._new_slot(model, profile, engine.name)
            core.logbook.note(f"{intent.sentence()}; nothing is running")
            core._set_state(tomb, State.STOPPED, f"{intent.sentence()}; nothing is running",
                            "switch to a model to start one", code="switch_interrupted")
            core._primary = model

async def adopt(core: Core, engine: Engine, keep: ContainerInfo, *, same_run: bool) -> None:
    config = core.config()
    profile = config.profiles.get(keep.profile)
    slot = core._slots.get(keep.profile)
    if same_run and slot is not None and slot.sup is not None:
        # This core saw its lines already: only re-read the ones it may have missed.
        since, replayed = recent_records(core.logbook.run_file(keep.id))
        old = slot.sup
        old.stop.set()
        core.logbook.end_run(old.container.id)
        slot.sup = None
        slot.ready_health.stop()
    else:
        restored = core.logbook.restore_run(keep.id)
        latest = docker_ts_seconds(restored.latest) if restored.latest else None
        # Re-read a margin before the newest saved line: stdout and stderr lines are not
        # saved in timestamp order. The replayed set drops what is already there.
        since = max(0.0, latest - REPLAY_MARGIN_S) if latest is not None else None
        replayed = restored.records
        if slot is None or slot.sup is None:
            slot = core._new_slot(keep.profile, profile, engine.name)
    assert slot is not None
    sup = core._attach(slot, keep, since=since, resume=True)
    sup.replayed = replayed
    core.logbook.note(f"adopted running container {keep.short_id} ({keep.profile})", model=slot.model)
    if core._primary is None or core._primary not in core._slots or \
            not core._slots[core._primary].has_container:
        core._primary = slot.model
    if profile is None:
        slot.stale_config = True
        core._set_state(slot, State.READY, f"running '{keep.profile}', which is no longer in "
                        "models.conf", "switch to a current profile", code="unknown_profile")
        return
    slot.stale_config = config_hash(profile, config.instance) != keep.config_hash
    endpoint = core._endpoint(slot)
    assert endpoint is not None
    probe = core.probe_factory(endpoint)
    try:
        slot.health = await probe.health()
    finally:
        await probe.aclose()
    if slot.health.status == "ok" or keep.status == "paused":
        # Loaded already: adopted at once, no job that would make a switch wait or be refused.
        adopted_ready(core, slot, sup)
        return
    job = Job(kind="adopt", profile=keep.profile, profile_name=profile.name,
              force=False, rollback=False, previous=None,
              estimate=core.history.estimate(keep.profile), engine=engine.name)
    job.claims = {keep.profile}
    core._begin(job, [])
    assert core._tg is not None
    core._tg.start_soon(core._run_job, job, [], partial(do_adopt, core), slot, sup)

def adopted_ready(core: Core, slot: Slot, sup: Supervisor) -> None:
    stale = "running with a stale config: models.conf changed since it started"
    core._set_state(slot, State.READY, stale if slot.stale_config else None,
                    "switch to the profile again to apply the new config" if slot.stale_config
                    else None, code="stale_config" if slot.stale_config else None)
    core._after_ready(slot, sup, adopted=True)

async def do_adopt(core: Core, job: Job, slot: Slot, sup: Supervisor) -> None:
    assert slot.profile is not None
    core._phase(job, "loading")
    core._set_state(slot, State.LOADING, f"loading {slot.name} (adopted)")
    failure = await core._await_ready(job, slot, sup)
    if failure is None:
        job.result = "ready"
        adopted_ready(core, slot, sup)
        return
    job.result, job.failure = "failed", failure
    job.log_lines = [ln.text for ln in core.logbook.tail(25, run="current", model=slot.model)]
    if failure.reason == DOCKER_UNAVAILABLE:
        core._set_state(slot, State.UNREACHABLE, failure.message, failure.hint, code=DOCKER_UNAVAILABLE)
        return
    await core._remove(job, slot, quick=True)
    core._set_state(slot, State.FAILED, failure.message, failure.hint, code=failure.reason)


