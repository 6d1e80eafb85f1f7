"""Human-readable text for the CLI: the models table, status, switch progress and outcomes.

Pure functions from the daemon's JSON to strings; nothing here does I/O. Text that came
from a container or Docker is escaped here (a log line must stay one line); the CLI escapes
everything it prints once more on the way out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from llm_mcp.runtime.docker_problem import status_words
from llm_mcp.runtime.failure_lines import failure_lines
from llm_mcp.util.durations import duration
from llm_mcp.util.terminal_text import visible
from llm_mcp.wire import ModelEntry, RunningModel, Status

FAILURE_LOG_LINES = 25


def ago(wall: float | None, now: float | None = None) -> str:
    if wall is None:
        return "-"
    return f"{duration(max(0.0, (now or time.time()) - wall))} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _num(value: Any, suffix: str = "") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:g}{suffix}"
    return f"{value}{suffix}"


def models_table(models: Sequence[Mapping[str, Any]]) -> str:
    """The profiles: * marks the running ones; WHERE is engine/gpus; REPLACES (shown when a switch
    would stop something) lists the running models a switch to that row would stop."""
    entries = [ModelEntry.model_validate(m) for m in models]
    replaces = any(e.would_replace and not e.is_running for e in entries)
    rows = []
    for m, e in zip(models, entries, strict=True):
        model = str(m.get("model", ""))
        if m.get("model_present") is False:
            model += " (missing)"
        row = [
            "*" if e.is_running else " ", str(m.get("id", "")), str(m.get("name", "")), model,
            visible(e.where), _num(m.get("ctx_size")), _num(m.get("n_gpu_layers")),
            _num(m.get("speed"), " t/s"), measured_speed(m.get("measured")),
            duration(m.get("estimated_load_seconds")) if m.get("estimated_load_seconds") else "-",
            fit_word(m.get("fit")),
        ]
        if replaces:
            row.append(visible(",".join(e.would_replace)) if e.would_replace and not e.is_running else "-")
        rows.append([*row, "bench" if m.get("bench") else ""])
    headers = [" ", "ID", "NAME", "MODEL", "WHERE", "CTX", "GPU LAYERS", "SPEED", "MEASURED", "LOAD", "FIT"]
    out = table([*headers, *(["REPLACES"] if replaces else []), ""], rows)
    out += "".join(f"\n{line}" for line in fit_notes(models))
    running = [e for e in entries if e.is_running]
    if not running:
        out += "\n(no model running; `llm-mcp switch ID` starts one)"
    else:
        states = [f"{e.id} {e.running}" for e in running if e.running and e.running != "ready"]
        out += "\n* running now" + (f" ({', '.join(states)})" if states else "")
        if replaces:
            out += "; REPLACES: what a switch to that model would stop (the others keep serving)"
    return out


_FIT_WORDS = {"fits": "fits", "tight": "tight", "wont_fit": "WON'T FIT", "unknown": "?"}


def fit_word(fit: Mapping[str, Any] | None) -> str:
    """The pre-flight verdict in a table cell."""
    return _FIT_WORDS.get(str(fit.get("verdict")), "-") if fit else "-"


def fit_notes(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per profile that will not fit or is tight: its numbers, and where to look next."""
    out = []
    for m in models:
        fit = m.get("fit") or {}
        pid = m.get("id")
        if fit.get("verdict") == "wont_fit":
            out.append(f"{pid}: {visible(str(fit.get('message')))}; `llm-mcp fit {pid} --suggest` shows what "
                       "fits; `switch` refuses it without --force")
        elif fit.get("verdict") == "tight":
            out.append(f"{pid}: {visible(str(fit.get('message')))}; `llm-mcp fit {pid}` for the breakdown")
    return out


def _speed(speed: Mapping[str, Any] | None) -> str | None:
    if not speed:
        return None
    measured, expected = speed.get("measured_tps"), speed.get("expected_tps")
    if measured is None:
        return f"not measured yet (expected {expected:g} t/s)" if expected else "not measured yet"
    text = f"{measured:g} t/s"
    if expected:
        ratio = speed.get("ratio")
        verdict = "as expected" if speed.get("as_expected") else "SLOWER than expected"
        text += f" vs {expected:g} expected ({ratio:.0%}, {verdict})" if ratio is not None else ""
    text += f" [{speed['source']}]" if speed.get("source") else ""
    bench = speed.get("bench_tps")
    if bench is not None and speed.get("source") != "bench":
        text += f"; bench {bench:g} t/s"
    return text


def _offload(offload: Mapping[str, Any] | None) -> str | None:
    if not offload:
        return None
    text = f"{offload.get('layers')}/{offload.get('total')} layers on the GPU"
    expected = offload.get("expected")
    if expected is not None:
        matches = offload.get("matches")
        verdict = "matches" if matches else ("does NOT match" if matches is False else "vs")
        text += f" ({verdict} n_gpu_layers = {expected})"
    return text


def _gpu(gpu: Mapping[str, Any] | None) -> list[str]:
    if not gpu:
        return []
    if not gpu.get("available"):
        return [f"gpu:        none ({gpu.get('reason') or 'not visible'})"]
    out = []
    for g in gpu.get("gpus", []):
        used, total = g.get("memory_used_mib"), g.get("memory_total_mib")
        mem = f"{used:.0f}/{total:.0f} MiB" if used is not None and total else "memory n/a"
        util = g.get("utilization_pct")
        out.append(f"gpu {g.get('index', '?')}:      {g.get('name') or '?'}, {mem}"
                   + (f", {util:.0f}% busy" if util is not None else ""))
    return out


def status_text(s: Mapping[str, Any], now: float | None = None) -> str:
    """One block for one model (exactly as a single-model daemon's status read), one block per
    running model when there are several."""
    now = now or time.time()
    running = Status.model_validate(s).running_models()
    if len(running) > 1:
        return _several_status(s, running, now)
    reason, hint = s.get("reason"), s.get("hint")
    docker = status_words(s)  # a sentence and its fix, not the Docker SDK's exception text
    if docker is not None:
        reason, hint = docker.sentence, docker.hint
    lines = [f"state:      {s.get('state')}" + (f" ({reason})" if reason else "")]
    if hint:
        lines.append(f"hint:       {hint}")
    lines += endpoint_lines(s)
    lines += [f"warning:    {w}" for w in s.get("config_warnings") or []]
    profile = s.get("profile") or {}
    if profile:
        lines.append(f"model:      {profile.get('name')} [{profile.get('id')}] {profile.get('model', '')}")
    lines += _model_lines(s, now)
    if running:
        lines += _serving_lines(running[0])
    return "\n".join(lines + _status_tail(s))


def _model_lines(m: Mapping[str, Any], now: float) -> list[str]:
    """What one model's block says after its name and state."""
    lines = []
    if m.get("stale_config"):
        lines.append("config:     models.conf changed since this container started; switch again to apply")
    if m.get("endpoint"):  # this model's llama-server itself; "endpoint:" is the daemon's, for every model
        lines.append(f"server:     {m['endpoint']}")
    container = m.get("container")
    if container:
        name = f"{container['name']} " if container.get("name") else ""
        lines.append(f"container:  {name}{container.get('id')} ({container.get('image')})")
        lines.append(f"uptime:     {duration(container.get('uptime'))}")
    if m.get("memory_bytes") is not None:
        lines.append(f"memory:     {_bytes(m['memory_bytes'])}")
    if m.get("health"):
        detail = m.get("health_detail") or {}
        lines.append(f"health:     {m['health']}" + (f" ({detail['message']})" if detail.get("message")
                                                       else ""))
        if detail.get("hint"):
            lines.append(f"            {detail['hint']}")
    speed = _speed(m.get("speed"))
    if speed:
        lines.append(f"speed:      {speed}")
    offload = _offload(m.get("offload"))
    if offload:
        lines.append(f"offload:    {offload}")
    job = m.get("job")
    if job and not job.get("done"):
        lines.append(f"switching:  {progress_line(job)} (job {job.get('id')})")
    last = m.get("last_switch")
    if last:
        lines.append(f"last:       {last_switch(last, now)}")
    return lines


def endpoint_lines(s: Mapping[str, Any]) -> list[str]:
    """The daemon's model endpoint ([proxy] in models.conf): where, or why it is not served."""
    proxy = Status.model_validate(s).proxy
    if proxy is None:
        return []
    if proxy.url:
        return [f"endpoint:   {visible(proxy.url)} (OpenAI and Anthropic; any model, loaded on demand)"]
    if proxy.error:
        return [f"endpoint:   NOT SERVED: {visible(proxy.error)}",
                "            fix [proxy] listen in models.conf, then restart the daemon"]
    return []


def requests_text(m: RunningModel) -> str | None:
    """"2 in flight, 1 queued"; None when the endpoint has no request for it."""
    r = m.requests
    if r is None or not (r.in_flight or r.queued):
        return None
    return ", ".join([f"{r.in_flight} in flight", *([f"{r.queued} queued"] if r.queued else [])])


def ttl_text(m: RunningModel) -> str | None:
    """"4m12s left (unloaded after 5m00s idle)"; None: no ttl."""
    if m.ttl is None:
        return None
    of = duration(m.ttl.seconds, compact=True)
    if m.ttl.remaining is None:
        return f"unloaded after {of} idle; paused while requests run"
    return f"{duration(m.ttl.remaining, compact=True)} left (unloaded after {of} idle)"


def _serving_lines(m: RunningModel) -> list[str]:
    """The endpoint's requests for one model, its idle unload, and whether the daemon preloads it."""
    lines = []
    requests = requests_text(m)
    if requests:
        lines.append(f"requests:   {requests}")
    ttl = ttl_text(m)
    if ttl:
        lines.append(f"ttl:        {ttl}")
    if m.preload:
        lines.append("preload:    yes (loaded when the daemon starts)")
    return lines


def _status_tail(s: Mapping[str, Any]) -> list[str]:
    lines = []
    state_dir = s.get("state_dir") or {}
    if state_dir.get("writable") is False:
        lines.append(f"state dir:  NOT WRITABLE ({state_dir.get('error')}): logs only in memory, "
                     f"load times not saved; free space in {state_dir.get('path')}")
    return lines + _gpu(s.get("gpu"))


def _several_status(s: Mapping[str, Any], running: Sequence[RunningModel], now: float) -> str:
    ready = sum(m.state == "ready" for m in running)
    lines = [f"models:     {len(running)} ({ready} ready)", *endpoint_lines(s)]
    docker = status_words(s)
    if docker is not None:
        lines += [f"docker:     {docker.sentence}", f"hint:       {docker.hint}"]
    lines += [f"engine:     {e.name}: {e.message or 'not answering'}" + (f" ({e.hint})" if e.hint else "")
              for e in Status.model_validate(s).engines if not e.available]
    lines += [f"warning:    {w}" for w in s.get("config_warnings") or []]
    for m in running:
        raw = m.model_dump(mode="json")
        profile = m.profile
        file = f" {profile.model}" if profile is not None and profile.model else ""
        lines += ["", f"model:      {m.name or m.id} [{m.id}]{file}",
                  f"state:      {m.state}" + (f" ({m.reason})" if m.reason else "")]
        if m.hint and m.state != "ready":
            lines.append(f"hint:       {m.hint}")
        lines.append(f"placement:  engine {m.engine}, gpus {m.gpus}" + (", exclusive" if m.exclusive else ""))
        lines += _model_lines(raw, now) + _serving_lines(m)
    listed = {m.job.id for m in running if m.job is not None}
    others = [j for j in Status.model_validate(s).jobs_in_flight() if j.id not in listed]
    tail = [f"job:        {progress_line(j.model_dump(mode='json'))} ({j.kind} job {j.id})" for j in others]
    tail += _status_tail(s)
    return "\n".join(lines + (["", *tail] if tail else []))


# ---- llm-mcp ps --------------------------------------------------------------------------


def ps_table(s: Mapping[str, Any], now: float | None = None) -> str:
    """One row per running model, as compact as `ollama ps`: REQ is the endpoint's requests (in
    flight, +queued), TTL the time left before an idle unload; SERVER its llama-server (no scheme,
    to stay within 80 columns)."""
    running = Status.model_validate(s).running_models()
    if not running:
        return "nothing is running (`llm-mcp switch ID` starts a model; `llm-mcp models` lists them)"
    rows = []
    for m in running:
        state = m.state
        if m.job is not None and not m.job.done and m.job.progress is not None and m.state != "ready":
            state += f" {m.job.progress:.0%}"
        uptime = m.container.uptime if m.container is not None else None
        server = (m.endpoint or "-").removeprefix("http://")
        rows.append([visible(m.id), visible(m.engine), visible(m.gpus), state, _gib(m.memory_bytes),
                     requests_cell(m), ttl_cell(m), visible(server),
                     "-" if uptime is None else duration(uptime, compact=True)])
    return table(["ID", "ENGINE", "GPUS", "STATE", "MEMORY", "REQ", "TTL", "SERVER", "UPTIME"], rows)


def requests_cell(m: RunningModel) -> str:
    """"2" in flight, "2+1q" with one queued, "-" for none."""
    r = m.requests
    if r is None or not (r.in_flight or r.queued):
        return "-"
    return f"{r.in_flight}+{r.queued}q" if r.queued else str(r.in_flight)


def ttl_cell(m: RunningModel) -> str:
    """Time left before an idle unload; "busy" while requests hold it; "-" without a ttl."""
    if m.ttl is None:
        return "-"
    return "busy" if m.ttl.remaining is None else duration(m.ttl.remaining, compact=True)


def _gib(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / (1 << 30):.1f} GiB" if value >= 1 << 30 else f"{value / (1 << 20):.0f} MiB"


def last_switch(job: Mapping[str, Any], now: float | None = None) -> str:
    what = {"switch": f"switch to {job.get('name') or job.get('profile')}", "stop": "stop",
            "adopt": f"adopted {job.get('profile')}", "crash": f"{job.get('profile')} crashed",
            "bench": "bench of " + ", ".join(map(str, (job.get("bench") or {}).get("order") or []))}
    text = f"{what.get(str(job.get('kind')), job.get('kind'))}: {job.get('result') or job.get('phase')}"
    if job.get("load_seconds"):
        text += f" in {duration(job['load_seconds'])}"
    elif job.get("kind") == "bench" and job.get("elapsed"):
        text += f" in {duration(job['elapsed'])}"
    if job.get("reason"):
        text += f" ({job['reason']}"
        if job.get("restored") is not None:
            text += f"; previous model {'restored' if job['restored'] else 'NOT restored'}"
        text += ")"
    if job.get("created_at"):
        text += f", {ago(job['created_at'], now)}"
    return text


def progress_line(job: Mapping[str, Any]) -> str:
    """One line: name, phase, estimated percentage and elapsed time."""
    name = job.get("name") or job.get("profile") or job.get("kind")
    phase = str(job.get("phase", "")).replace("_", " ")
    elapsed = float(job.get("elapsed") or 0.0)
    progress, estimate = job.get("progress"), job.get("estimate")
    if progress is not None and estimate:
        return f"{name}: {phase} {progress:.0%} ({duration(elapsed)} of ~{duration(estimate)})"
    return f"{name}: {phase} ({duration(elapsed)})"


def outcome(job: Mapping[str, Any]) -> str:
    """What a finished job means, with everything needed to act on a failure."""
    name = job.get("name") or job.get("profile") or ""
    result = job.get("result")
    if result == "ready":
        if job.get("detail") == "already loaded":
            return f"{name} is already loaded and ready"
        took = job.get("load_seconds") or job.get("elapsed")
        stops = [str(x) for x in job.get("stops") or [] if x != job.get("profile")]
        return f"{name} is ready (loaded in {duration(took)})" + (f"; it replaced {', '.join(stops)}"
                                                                 if stops else "")
    if result == "stopped":
        stops = [str(x) for x in job.get("stops") or []]
        if job.get("kind") == "unload":
            return f"{name or job.get('profile')} is stopped; the other models keep serving"
        if len(stops) > 1:
            return f"every model is stopped ({', '.join(stops)})"
        return "the model is stopped"
    if result == "cancelled":
        return f"the switch to {name} was cancelled ({job.get('detail') or 'replaced'})"
    lines = [f"switch to {name} failed: {job.get('message') or job.get('detail') or result}"
             + (f" [{job['reason']}]" if job.get("reason") else "")]
    if job.get("hint"):
        lines.append(f"hint: {job['hint']}")
    restored = job.get("restored")
    if restored is True:
        lines.append(f"the previous model ({job.get('previous')}) was restored")
    elif restored is False:
        lines.append(f"the previous model ({job.get('previous')}) could NOT be restored; nothing is running")
    elif job.get("rollback") is False and job.get("previous"):
        lines.append("rollback was off: the previous model was not restored")
    log_lines = [str(ln) for ln in job.get("log_lines") or []]
    lines += failure_log(log_lines, FAILURE_LOG_LINES)
    if job.get("detail") and job.get("detail") not in log_lines:
        lines.append(f"detail: {visible(str(job['detail']))}")
    return "\n".join(lines)


def failure_log(log_lines: Sequence[str], limit: int, indent: str = "  ") -> list[str]:
    """A failure's log lines, the ones that say why first (as every front end shows them)."""
    picked = failure_lines(log_lines, limit)
    out: list[str] = []
    if picked.why:
        out.append("the log lines that say why:")
        out += [f"{indent}{visible(ln)}" for ln in picked.why]
        if picked.other:
            out.append("other recent log lines:")
    elif picked.other:
        out.append("last log lines:")
    out += [f"{indent}{visible(ln)}" for ln in picked.other]
    return out


def log_line(line: Mapping[str, Any]) -> str:
    kind = line.get("kind")
    text = visible(str(line.get("text", "")))
    if kind == "note":
        return f"[llm-mcp] {text}"
    return text


# ---- bench (measured speed) -------------------------------------------------------------


def _tps(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def measured_speed(measured: Mapping[str, Any] | None) -> str:
    """The models table's MEASURED cell: the bench's median generation speed, and when."""
    if not measured:
        return "-"
    gen = measured.get("gen_tps") or {}
    if gen.get("median") is None:
        return "-"
    day = time.strftime("%m-%d", time.localtime(float(measured.get("date") or 0)))
    return f"{_tps(gen['median'])} t/s ({day})"


def _stat(values: Mapping[str, Any] | None, unit: str) -> str:
    if not values or values.get("median") is None:
        return "-"
    med, low, high = values["median"], values.get("min"), values.get("max")
    if low is None or high is None or low == high:
        return f"{_tps(med)}{unit}"
    return f"{_tps(med)}{unit} ({_tps(low)}-{_tps(high)})"


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value / (1 << 30):.2f} GiB" if value >= 1 << 30 else f"{value / (1 << 20):.0f} MiB"


def bench_progress(job: Mapping[str, Any]) -> str:
    """One line while a bench runs: which profile, which step, which run."""
    bench = job.get("bench") or {}
    order = bench.get("order") or []
    index = int(bench.get("index") or 0)
    name = job.get("name") or job.get("profile") or ""
    step = str(bench.get("step") or job.get("phase") or "").replace("_", " ")
    where = f"[{index + 1}/{len(order)}] " if order else ""
    if step == "measuring" and bench.get("run"):
        settings = bench.get("settings") or {}
        step += f" run {bench['run']}/{settings.get('repeat', '?')}"
    elif step == "loading":
        step = str(job.get("phase") or step).replace("_", " ")
    return f"bench {where}{name}: {step} ({duration(float(job.get('elapsed') or 0.0))})"


def bench_results(job: Mapping[str, Any]) -> str:
    """A finished bench: a row per profile (medians, with min-max over the runs), then what is loaded."""
    bench = job.get("bench") or {}
    settings = bench.get("settings") or {}
    rows = []
    for profile_id in bench.get("order") or bench.get("profiles") or []:
        r = (bench.get("results") or {}).get(profile_id)
        shown = visible(str(profile_id))
        if r is None:
            rows.append([shown, "not measured", "", "", "", ""])
        elif r.get("error"):
            rows.append([shown, f"failed: {visible(str(r['error']))}", "", "", "", ""])
        else:
            rows.append([shown, _stat(r.get("load_seconds"), " s"), _stat(r.get("prompt_tps"), " t/s"),
                         _stat(r.get("gen_tps"), " t/s"), _bytes(r.get("memory_bytes")),
                         str(r.get("memory_source") or "")])
    head = (f"bench: {settings.get('prompt_tokens')} prompt tokens, {settings.get('gen_tokens')} generated, "
            f"{settings.get('repeat')} runs each (median, min-max)")
    out = head + "\n" + table(["PROFILE", "LOAD", "PROMPT", "GENERATION", "MEMORY", "FROM"], rows)
    if job.get("result") == "cancelled":
        out += f"\nthe bench was cancelled ({job.get('detail') or 'replaced'})"
    elif job.get("previous"):
        restored = "restored" if job.get("restored") else "NOT restored"
        out += f"\n{job.get('previous')} (running before the bench) {restored}"
    else:
        out += "\nnothing was running before the bench: nothing is running now"
    return out
