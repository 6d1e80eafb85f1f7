"""A STAND-IN daemon client for the monitor's snapshot and unit tests.

Scripted answers (status, list_models, tail_logs) and a scripted event stream;
no socket, no daemon, no Docker. Snapshot content must be deterministic, so the
snapshot tests use this; the behaviour tests in test_monitor_live.py use a real
daemon and the real llama-server.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

from llm_mcp.protocol import BUSY, NOT_FOUND, WONT_FIT, ProtocolError

NOW = 1_760_000_000.0  # the frozen clock of every snapshot


def frozen_clock() -> float:
    return NOW


def profile(pid: str, name: str, model: str, *, speed: float | None = None, ctx: int = 8192,
            bench: bool = False, current: bool = False, present: bool = True) -> dict[str, Any]:
    return {"id": pid, "name": name, "model": model, "ctx_size": ctx, "speed": speed, "bench": bench,
            "current": current, "estimated_load_seconds": None, "model_present": present,
            "n_gpu_layers": "99", "port": 8080}


MODELS = [
    profile("qwen3-coder", "Qwen3 Coder 30B", "Qwen3-Coder-30B-A3B-Q4_K_M.gguf", speed=140, ctx=65536),
    profile("gpt-oss", "gpt-oss 120B", "gpt-oss-120b-mxfp4.gguf", speed=45, ctx=131072),
    profile("gemma3", "Gemma 3 27B", "gemma-3-27b-it-Q4_K_M.gguf", speed=38, ctx=32768),
    profile("qwen3-coder-bench-q8", "Qwen3 Coder Q8 (bench)", "Qwen3-Coder-30B-A3B-Q8_0.gguf", speed=110,
            ctx=16384, bench=True),
    profile("gpt-oss-cpu-moe", "gpt-oss 120B all experts on CPU", "gpt-oss-120b-mxfp4.gguf", speed=20,
            ctx=16384, bench=True),
]


def gpu_snapshot(util: tuple[float, float] = (87.0, 12.0), mem: tuple[float, float] = (21504.0, 6144.0),
                 temps: tuple[int, int] = (83, 61), idle: bool = False) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "available": True, "reason": None, "driver_version": "570.124.06", "taken_at": NOW,
        "gpus": [
            {"index": 0, "name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "utilization_pct": util[0],
             "memory_used_mib": mem[0], "memory_total_mib": 24564.0, "temperature_c": temps[0],
             "slowdown_temp_c": 87, "shutdown_temp_c": 92, "power_w": 388.4, "power_limit_w": 450.0,
             "fan_pct": 71, "processes": [{"pid": 4242, "used_mib": 20480.0, "ours": True}]},
            {"index": 1, "name": "NVIDIA RTX A4000", "uuid": "GPU-1", "utilization_pct": util[1],
             "memory_used_mib": mem[1], "memory_total_mib": 16376.0, "temperature_c": temps[1],
             "slowdown_temp_c": 95, "shutdown_temp_c": 100, "power_w": 41.0, "power_limit_w": 140.0,
             "fan_pct": 41, "processes": [{"pid": 4242, "used_mib": 5120.0, "ours": True},
                                         {"pid": 999, "used_mib": 512.0, "ours": False}]},
        ],
    }
    if idle:  # nothing loaded: no processes, idle power
        for gpu, power in zip(snapshot["gpus"], (21.0, 9.0), strict=True):
            gpu.update(processes=[], power_w=power, fan_pct=30)
    return snapshot


NO_GPU = {"available": False, "reason": "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on "
          "this machine", "driver_version": None, "gpus": [], "taken_at": NOW}


def system_sample(cpu: float = 23.0, container: bool = True) -> dict[str, Any]:
    return {"cpu_pct": cpu, "per_cpu_pct": [cpu] * 16, "ram_used_mib": 40960.0, "ram_total_mib": 64212.0,
            "swap_used_mib": 0.0, "load_1": 3.12, "load_5": 2.48, "load_15": 1.97, "taken_at": NOW,
            "container": {"cpu_pct": 98.5, "mem_used_mib": 3277.0, "mem_limit_mib": 64212.0}
            if container else None}


def status(state: str = "stopped", current: dict[str, Any] | None = None, *,
           job: dict[str, Any] | None = None, last: dict[str, Any] | None = None,
           gpu: dict[str, Any] | None = None, reason: str | None = None,
           hint: str | None = None, measured: float | None = None) -> dict[str, Any]:
    speed = None
    if current is not None:
        expected = current.get("speed")
        speed = {"measured_tps": measured, "expected_tps": expected,
                 "ratio": round(measured / expected, 3) if measured and expected else None}
    return {
        "instance": "standin", "state": state, "since": NOW - 30, "reason": reason, "hint": hint,
        "profile": current, "endpoint": "http://127.0.0.1:8080" if current else None,
        "container": {"id": "0123456789ab", "name": "llm-mcp-standin", "image": "llama.cpp:server-cuda",
                      "started_at": NOW - 3723, "uptime": 3723.0} if current and state == "ready" else None,
        "health": "ok" if state == "ready" else None, "stale_config": False, "job": job,
        "last_switch": last, "speed": speed,
        "offload": {"layers": 49, "total": 49, "expected": "99", "matches": True}
        if current and state == "ready" else None,
        "gpu": gpu if gpu is not None else gpu_snapshot(),
    }


def job(profile_id: str, name: str, *, phase: str = "loading_tensors", elapsed: float = 12.4,
        estimate: float | None = 31.0, done: bool = False, result: str | None = None,
        previous: str | None = None, **extra: Any) -> dict[str, Any]:
    phases = [{"phase": "queued", "at": 0.0}, {"phase": "stopping_previous", "at": 0.1},
              {"phase": "starting", "at": 2.3}, {"phase": "loading", "at": 3.0},
              {"phase": "loading_model", "at": 3.2}, {"phase": phase, "at": 5.9}]
    return {"id": "job-1760000000-7", "kind": "switch", "profile": profile_id, "name": name, "phase": phase,
            "phases": phases, "elapsed": elapsed, "estimate": estimate,
            "progress": None if not estimate else min(0.99, elapsed / estimate), "force": False,
            "rollback": True, "previous": previous, "result": result, "done": done, "reason": None,
            "message": None, "hint": None, "detail": "", "log_lines": [], "restored": None,
            "replaced_by": None, "load_seconds": None, "created_at": NOW - elapsed, **extra}


def log_line(seq: int, text: str, kind: str = "log") -> dict[str, Any]:
    return {"seq": seq, "time": NOW - 100 + seq, "run": "0123456789ab" if kind == "log" else "", "kind": kind,
            "text": text}


LOAD_LOG = [
    "--- switching to Qwen3 Coder 30B ---",
    "0.00.012.311 I build: 6140 (3f4a7e1c) with cc (Debian 12.2.0-14) 12.2.0 for x86_64-linux-gnu",
    "0.00.012.402 I system info: n_threads = 16, n_threads_batch = 16, total_threads = 32",
    "0.00.013.120 I srv    load_model: loading model '/models/Qwen3-Coder-30B-A3B-Q4_K_M.gguf'",
    "0.00.310.877 I load_tensors: offloading 48 repeating layers to GPU",
    "0.00.310.901 I load_tensors: offloaded 49/49 layers to GPU",
    "0.00.311.004 I load_tensors:        CUDA0 model buffer size = 16892.15 MiB",
    "0.00.311.010 I load_tensors:   CPU_Mapped model buffer size =   166.92 MiB",
    "0.05.820.391 I llama_context: n_ctx_per_seq = 65536",
    "0.05.990.017 W llama_context: n_ctx_per_seq (65536) < n_ctx_train (262144) -- the full capacity "
    "of the model will not be utilized",
    "0.06.102.554 I srv          init: initializing slots, n_slots = 1",
    "0.06.380.921 I srv  llama_server: model loaded",
    "0.06.381.000 I main: server is listening on http://0.0.0.0:8080 - starting the main loop",
    "0.06.381.120 I srv  update_slots: all slots are idle",
]


def load_lines(start: int = 1) -> list[dict[str, Any]]:
    return [log_line(start + i, text, "separator" if text.startswith("---") else "log")
            for i, text in enumerate(LOAD_LOG)]


def envelope(seq: int, topic: str, data: dict[str, Any], dropped: int = 0) -> dict[str, Any]:
    return {"topic": topic, "seq": seq, "time": NOW, "data": data, "dropped": dropped}


class StandInClient:
    """Behaves like DaemonClient for the monitor; everything comes from the script."""

    def __init__(self, status: dict[str, Any], *, models: list[dict[str, Any]] | None = None,
                 lines: list[dict[str, Any]] | None = None, events: list[dict[str, Any]] | None = None,
                 on_call: Callable[[str, dict[str, Any]], Any] | None = None) -> None:
        self.status = status
        self.models = MODELS if models is None else models
        self.lines = list(lines or [])
        self.script = list(events or [])
        self.on_call = on_call
        self.hello: dict[str, Any] = {"pid": 4242, "started_at": NOW - 7200, "protocol": 1}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.drained = asyncio.Event()
        self.live: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # A test clears it to hold the monitor's next connection (the daemon is "down") until set.
        self.connectable = asyncio.Event()
        self.connectable.set()

    async def __aenter__(self) -> StandInClient:
        await self.connectable.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call(self, method: str, **params: Any) -> Any:
        self.calls.append((method, params))
        if self.on_call is not None:
            answer = self.on_call(method, params)
            if answer is not None:
                return answer
        if method == "status":
            answer = copy.deepcopy(self.status)
            if params.get("gpu") is False:  # like the daemon: no GPU sample asked for
                answer.pop("gpu", None)
            return answer
        if method == "list_models":
            return {"models": copy.deepcopy(self.models)}
        if method == "tail_logs":
            n = int(params.get("lines", 100))
            return {"lines": copy.deepcopy(self.lines[-n:]), "run": "all"}
        running = self.status.get("job")
        if method in ("switch", "stop") and running and not running.get("done") and not params.get("force"):
            joins = method == "switch" and running.get("kind") == "switch" and \
                running.get("profile") == params.get("model")
            if joins:  # like the daemon: the same profile joins the switch in flight
                return copy.deepcopy(running)
            raise busy_error(running)
        if method in ("switch", "stop"):
            return job(str(params.get("model") or ""), "", phase="queued", elapsed=0.0)
        if method == "unload":  # like the daemon: `not_running` for a model that has no container
            rows = self.status.get("models") or []
            valid = [r["id"] for r in rows if r.get("state") not in ("failed", "stopped")]
            if params.get("model") not in valid:
                raise ProtocolError(NOT_FOUND, f"'{params.get('model')}' is not running",
                                    {"reason": "not_running", "valid": valid})
            name = next((r.get("name") for r in rows if r.get("id") == params["model"]), "")
            return job(str(params["model"]), str(name), phase="queued", elapsed=0.0, kind="unload",
                       stops=[params["model"]])
        raise ProtocolError(-32601, f"unknown method {method}")

    async def events(self, topics: list[str], capacity: int = 2000) -> AsyncIterator[dict[str, Any]]:
        for event in self.script:
            yield event
        self.drained.set()
        while True:
            live = await self.live.get()
            if live is None:  # the "daemon" went away
                return
            yield live


def busy_error(running: dict[str, Any]) -> ProtocolError:
    return ProtocolError(BUSY, "a switch is in progress", {"reason": "busy", "job": running,
                                                           "hint": "repeat with force"})


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text (the screen plus any screen it overlays)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


# ---- what a daemon with memory fit (H7) and bench results (H8) adds to list_models ----

GiB = 1 << 30


def fit(verdict: str, message: str, devices: list[tuple[str, float, float | None, str]] | None = None,
        error: str | None = None) -> dict[str, Any]:
    return {"verdict": verdict, "message": message, "error": error,
            "devices": [{"device": d, "need_bytes": int(need * GiB),
                         "free_bytes": None if free is None else int(free * GiB), "verdict": v}
                        for d, need, free, v in devices or []]}


def measured(gen: float, prompt: float, load: float, *, runs: int = 5, spread: float = 0.03,
             memory_gib: float | None = 18.0, days_ago: float = 1.0) -> dict[str, Any]:
    def band(median: float) -> dict[str, float]:
        return {"median": median, "min": round(median * (1 - spread), 3),
                "max": round(median * (1 + spread), 3)}

    return {"date": NOW - days_ago * 86400, "image": "ghcr.io/ggml-org/llama.cpp:server-cuda", "runs": runs,
            "prompt_tokens": 512, "gen_tokens": 128, "load_seconds": band(load), "prompt_tps": band(prompt),
            "gen_tps": band(gen), "memory_bytes": None if memory_gib is None else int(memory_gib * GiB),
            "memory_source": "nvml"}


def models_with_facts() -> list[dict[str, Any]]:
    """MODELS as a daemon with fit verdicts and bench results lists them (two never benched)."""
    facts = {
        "qwen3-coder": (fit("fits", "fits: needs 17.70 GiB (±638.7 MiB) on gpu0, 23.50 GiB free",
                            [("gpu0", 17.7, 23.5, "fits"), ("host", 0.2, 22.7, "fits")]),
                        measured(151.2, 2850.4, 6.4)),
        "gpt-oss": (fit("tight", "tight: needs 15.40 GiB (±602.1 MiB) on gpu1, 15.90 GiB free",
                        [("gpu0", 22.1, 23.5, "fits"), ("gpu1", 15.4, 15.9, "tight"),
                         ("host", 38.0, 52.7, "fits")]),
                    measured(47.1, 950.2, 31.0, memory_gib=37.5)),
        "gemma3": (fit("wont_fit", "does not fit: needs 21.30 GiB (±701.5 MiB) on gpu0, 18.20 GiB free",
                       [("gpu0", 21.3, 18.2, "wont_fit"), ("host", 0.4, 22.7, "fits")]), None),
        "qwen3-coder-bench-q8": (fit("unknown", "fit unknown: model file unreadable: truncated GGUF header",
                                     error="model file unreadable: truncated GGUF header"),
                                 measured(118.6, 2410.0, 9.8, runs=3, spread=0.08, memory_gib=31.2)),
        "gpt-oss-cpu-moe": (fit("fits", "fits: needs 2.10 GiB (±96.0 MiB) on gpu0, 23.50 GiB free",
                                [("gpu0", 2.1, 23.5, "fits"), ("host", 61.0, 62.7, "tight")]), None),
    }
    out = []
    for m in copy.deepcopy(MODELS):
        verdict, result = facts[m["id"]]
        out.append({**m, "fit": verdict, "measured": result})
    return out


def wont_fit_error(profile_id: str = "gemma3") -> ProtocolError:
    """The daemon's refusal of a switch that does not fit (nothing was stopped)."""
    verdict = models_with_facts()[[m["id"] for m in MODELS].index(profile_id)]["fit"]
    return ProtocolError(WONT_FIT, f"'{profile_id}' {verdict['message']}; nothing was stopped, the running "
                         "model goes on", {"reason": "wont_fit", "model": profile_id, "fit": verdict,
                                           "hint": f"`llm-mcp fit {profile_id} --suggest` (MCP: fit_model) "
                                                   "shows settings that fit; force loads it anyway"})


def bench_job(order: list[str], *, index: int = 0, step: str = "measuring", run: int = 2, repeat: int = 3,
              results: dict[str, Any] | None = None, phase: str = "measuring", elapsed: float = 41.0,
              **extra: Any) -> dict[str, Any]:
    """A bench job in flight as the daemon reports it (job["bench"] carries the step and run)."""
    names = {m["id"]: m["name"] for m in MODELS}
    pid = order[index]
    bench = {"profiles": list(order), "settings": {"prompt_tokens": 512, "gen_tokens": 128, "repeat": repeat},
             "order": list(order), "index": index, "step": step, "run": run, "results": results or {}}
    return job(pid, names.get(pid, pid), phase=phase, elapsed=elapsed, estimate=None,
               **{"kind": "bench", "bench": bench, **extra})


# ---- a daemon that runs several models at once (issue 8: status.models, would_replace) ----

EMBED = profile("nomic-embed", "Nomic Embed v2", "nomic-embed-text-v2-Q8_0.gguf", speed=None, ctx=8192)
MANY_MODELS = [*MODELS[:3], EMBED, *MODELS[3:]]  # four production profiles, then the two bench ones
PLACEMENT: dict[str, tuple[str, str]] = {  # id -> (engine, gpus)
    "qwen3-coder": ("local", "0"), "gpt-oss": ("local", "all"), "gemma3": ("local", "1"),
    "nomic-embed": ("cpu-box", "none"), "qwen3-coder-bench-q8": ("local", "0"),
    "gpt-oss-cpu-moe": ("local", "all"),
}


def running_model(pid: str, state: str = "ready", *, measured: float | None = None, health: str | None = None,
                  uptime: float = 3723.0, port: int = 8080, reason: str | None = None,
                  job: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of status.models as the daemon reports it (RunningModel)."""
    current = next(m for m in MANY_MODELS if m["id"] == pid)
    engine, gpus = PLACEMENT[pid]
    ready = state == "ready"
    expected = current.get("speed")
    speed = {"measured_tps": measured, "expected_tps": expected,
             "ratio": round(measured / expected, 3) if measured and expected else None} if ready else None
    return {
        "id": pid, "name": current["name"], "state": state, "since": NOW - 30, "reason": reason,
        "reason_code": None, "hint": None, "engine": engine, "gpus": gpus, "exclusive": False, "port": port,
        "endpoint": f"http://127.0.0.1:{port}" if ready else None,
        "container": {"id": f"c0ffee{port}", "name": f"llm-mcp-standin-{pid}",
                      "image": "llama.cpp:server-cuda", "started_at": NOW - uptime, "uptime": uptime}
        if state != "failed" else None,
        "health": health or ("ok" if ready else None), "health_detail": None, "job": job, "last_switch": None,
        "speed": speed, "offload": None, "stale_config": False, "memory_bytes": None, "profile": current,
    }


def several(rows: list[dict[str, Any]], primary: str | None, *, gpu: dict[str, Any] | None = None,
            jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A status with `models`, and the primary model's fields at the top level (for old readers)."""
    first = next((r for r in rows if r["id"] == primary), None)
    base = status(first["state"] if first else "stopped", first["profile"] if first else None, gpu=gpu,
                  measured=(first["speed"] or {}).get("measured_tps") if first else None)
    if first is not None:
        keys = ("endpoint", "container", "health", "speed", "reason", "job")
        base.update({key: first[key] for key in keys})
    return {**base, "models": rows, "primary": primary, "jobs": jobs or [],
            "engines": [{"name": "local", "url": None, "local": True, "available": True, "since": NOW - 7200,
                         "message": None, "hint": None, "gpu_source": "nvml", "gpu_note": None},
                        {"name": "cpu-box", "url": "ssh://cpu-box", "local": False, "available": True,
                         "since": NOW - 7200, "message": None, "hint": None, "gpu_source": None,
                         "gpu_note": None}]}


def entries(running: dict[str, str]) -> list[dict[str, Any]]:
    """MANY_MODELS as list_models reports them with `running` ({id: state}) models running."""
    out = []
    for m in copy.deepcopy(MANY_MODELS):
        engine, gpus = PLACEMENT[m["id"]]
        conflicts = [o for o, (e, g) in PLACEMENT.items()
                     if o != m["id"] and e == engine and "none" not in (g, gpus)
                     and ("all" in (g, gpus) or set(g.split(",")) & set(gpus.split(",")))]
        state = running.get(m["id"])
        out.append({**m, "current": state is not None, "running": state, "engine": engine, "gpus": gpus,
                    "exclusive": False, "port": "auto", "conflicts_with": conflicts,
                    "would_replace": [] if state else [c for c in conflicts if c in running]})
    return out


def model_line(seq: int, model: str | None, text: str, kind: str = "log") -> dict[str, Any]:
    return {**log_line(seq, text, kind), "model": model}
