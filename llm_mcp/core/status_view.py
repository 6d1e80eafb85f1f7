"""What clients read: status (every model plus the single-model fields) and list_models."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from llm_mcp.config.models_conf import gpu_layers_value
from llm_mcp.config.placement import conflict
from llm_mcp.core.engine_link import (
    DOCKER_UNAVAILABLE,
    reconnect_hint,
)
from llm_mcp.core.preflight import unknown as fit_unknown
from llm_mcp.core.slots import LOCAL, Slot, round1
from llm_mcp.core.supervisor import describe_container
from llm_mcp.core.transitions import State

if TYPE_CHECKING:
    from llm_mcp.core.scheduler import Core

log = logging.getLogger("llm_mcp.status_view")


def list_models(core: Core) -> list[dict[str, Any]]:
    config = core.config()
    running = [m for m, s in core._slots.items() if s.has_container]
    out = []
    for profile in config.profiles.values():
        slot = core._slots.get(profile.id)
        entry = profile.to_dict()
        entry["running"] = slot.state.value if slot is not None and slot.has_container else None
        entry["current"] = entry["running"] is not None
        entry["default"] = profile.id == config.default_profile
        entry["engine"] = profile.engine
        entry["gpus"] = profile.gpus_text
        entry["exclusive"] = profile.exclusive
        entry["port"] = profile.port if profile.port is not None else "auto"
        entry["conflicts_with"] = [p.id for p in config.profiles.values()
                                   if p.id != profile.id and conflict(profile, p) is not None]
        entry["would_replace"] = [m for m in core._conflicts(profile, running) if m != profile.id]
        entry["estimated_load_seconds"] = core.history.estimate(profile.id)
        entry["model_present"] = profile.model_path().is_file()
        if core.memory_view is None:
            entry["fit"] = fit_unknown("no memory figures: pre-flight is off").to_dict()
        elif profile.engine != LOCAL:  # NVML and psutil see this machine only
            entry["fit"] = fit_unknown(f"no memory figures for engine '{profile.engine}': they are "
                                       "read on this machine only").to_dict()
        else:
            entry["fit"] = core.fits.entry(profile.id)
        entry["measured"] = core.bench_store.latest(profile)
        out.append(entry)
    return out

def model_status(core: Core, slot: Slot, now: float) -> dict[str, Any]:
    sup = slot.sup
    profile = slot.profile
    offload = None
    if sup is not None and sup.offload:
        expected = profile.n_gpu_layers if profile else None
        layers, total = sup.offload
        matches = None
        if expected is not None and expected.isdigit():
            matches = layers == min(int(expected), total)
        elif expected == "all":
            matches = layers == total
        offload = {"layers": layers, "total": total, "expected": gpu_layers_value(expected),
                   "matches": matches}
    speed = None
    if profile is not None:
        ratio = (slot.measured_tps / profile.speed
                 if slot.measured_tps is not None and profile.speed else None)
        bench = core.bench_store.latest(profile)
        speed = {"measured_tps": slot.measured_tps, "expected_tps": profile.speed,
                 "ratio": None if ratio is None else round(ratio, 3), "source": slot.speed_source,
                 "as_expected": None if ratio is None else ratio >= 0.8,
                 "bench_tps": bench["gen_tps"]["median"] if bench else None}
    job = next((j for j in reversed(core._active) if not j.done.is_set() and slot.model in j.claims
                and j.kind != "stop"), None)
    return {
        "id": slot.model,
        "name": slot.name,
        "state": slot.state.value,
        "since": slot.since,
        "reason": slot.reason,
        "reason_code": slot.code,
        "hint": slot.hint,
        "engine": slot.engine,
        "gpus": profile.gpus_text if profile else "all",
        "exclusive": profile.exclusive if profile else False,
        "port": slot.port if slot.port is not None else (profile.port if profile else None),
        "endpoint": core._endpoint(slot),
        "container": None if sup is None else describe_container(sup.container, now),
        "health": slot.health_status(),
        "health_detail": slot.ready_health.detail() if slot.state == State.READY else None,
        "job": job.to_dict() if job is not None else None,
        "last_switch": slot.last_job.to_dict() if slot.last_job else None,
        "speed": speed,
        "offload": offload,
        "stale_config": slot.stale_config,
        "memory_bytes": None,
        "requests": core.requests.to_dict(slot.model),
        "ttl": None if profile is None or profile.ttl is None else {
            "seconds": profile.ttl, "remaining": round1(core._ttl_remaining(slot))},
        "preload": bool(profile and profile.preload),
        "profile": profile.to_dict() if profile else None,
    }

def status(core: Core) -> dict[str, Any]:
    now = time.time()
    shown = sorted((s for s in core._slots.values() if listed(s)), key=lambda s: s.order)
    models = [model_status(core, s, now) for s in shown]
    primary = core._primary_slot()
    top = (next((m for m in models if m["id"] == primary.model), None) if primary else None)
    if top is None and primary is not None:
        top = model_status(core, primary, now)
    try:  # valid but risky settings (a non-loopback host); a broken file is reported elsewhere
        config_warnings = list(core.config().warnings)
    except Exception:
        config_warnings = []
    active = [j for j in core._active if not j.done.is_set()]
    local = core.engine
    stopped = {"state": State.STOPPED.value, "since": core._idle_since, "reason": None,
               "reason_code": None, "hint": None}
    if not local.available and local.problem is not None:
        stopped.update(reason=local.problem.message, hint=reconnect_hint(local.problem),
                       reason_code=DOCKER_UNAVAILABLE)
    single = top or stopped
    return {
        "instance": core.instance,
        "state": single["state"],
        "since": single["since"],
        "reason": single["reason"],
        "reason_code": single["reason_code"],
        "hint": single["hint"],
        "docker": local.to_dict(),
        "engines": engines_status(core, ),
        "primary": primary.model if primary else None,
        "models": models,
        "jobs": [j.to_dict() for j in active],
        # As the single-model version said it: profile and endpoint while a container runs.
        "profile": top["profile"] if top and top["container"] else None,
        "endpoint": top["endpoint"] if top and top["container"] else None,
        "container": top["container"] if top else None,
        "health": top["health"] if top else None,
        "health_detail": top["health_detail"] if top else None,
        "stale_config": top["stale_config"] if top else False,
        "job": active[-1].to_dict() if active else None,
        "last_switch": core._last_job.to_dict() if core._last_job else None,
        "speed": top["speed"] if top else None,
        "offload": top["offload"] if top else None,
        "state_dir": state_dir_status(core, ),
        "config_warnings": config_warnings,
    }

def listed(slot: Slot) -> bool:
    """Running models, and the ones whose end is news (a failure, a stop nobody asked for);
    a model stopped on request just leaves the list."""
    return slot.has_container or slot.state == State.FAILED or slot.code is not None

def engines_status(core: Core) -> list[dict[str, Any]]:
    settings = core._engine_settings
    out = []
    for name, engine in core.engines.items():
        conf = settings.get(name)
        local = name == LOCAL
        gpus_declared = conf.gpus if conf is not None else None
        out.append({
            **engine.link.to_dict(), "name": name, "local": local,
            "gpu_source": "nvml" if local else ("config" if gpus_declared else None),
            "gpu_note": None if local else (
                f"GPUs as declared in models.conf: {', '.join(gpus_declared)}; no live readings "
                "from another host" if gpus_declared else
                "no GPU readings: NVML sees only this machine's GPUs; declare `gpus` in the "
                f"[engine {name}] section"),
        })
    return out

def state_dir_status(core: Core) -> dict[str, Any]:
    """Can the daemon write its files (run logs, load history)? A full disk is a state."""
    error = core.logbook.write_error or core._history_error
    return {"path": str(core.state_dir), "writable": error is None, "error": error}

