"""`llm-mcp serve`: the MCP server, a thin client of the daemon.

Six tools (list_models, status, switch_model, unload_model, tail_logs, fit_model)
over stdio or streamable HTTP. The server owns nothing: every call goes to the
daemon through the socket, so several `serve` processes share the same models, and
a cancelled switch_model call leaves the job running in the daemon. The output
schemas are the daemon's own shapes (llm_mcp.wire) plus a summary for people.

Imports stay light (no Docker SDK, no NVML, no Textual): `serve` starts once per
Claude Code session and must answer `tools/list` quickly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from llm_mcp import __version__, protocol
from llm_mcp.clients.client import DaemonClient, DaemonUnavailable
from llm_mcp.clients.render import failure_log
from llm_mcp.protocol import ProtocolError
from llm_mcp.util.durations import duration
from llm_mcp.util.terminal_text import json_text, visible, visible_lines
from llm_mcp.wire import Job, Logs, ModelEntry, ModelList, Profile, RunningModel, Status

__all__ = ["Logs", "make_server", "run_serve"]

log = logging.getLogger("llm_mcp.clients.mcp_server")

POLL_SECONDS = 1.0  # one progress notification per poll of the job
MAX_LOG_LINES_IN_ERROR = 25

INSTRUCTIONS = """\
llm-mcp runs local llama.cpp servers (llama-server in Docker), one container per model \
profile of models.conf. Several models serve at once when models.conf places them apart \
(other GPUs, another engine, CPU only); two that would share a GPU, or a fixed port, replace \
each other. Every client shares the same servers.

- status: call it first, and whenever unsure. It lists every running model with its engine, \
GPUs, state and endpoint, the switches in flight, how the last switch ended, measured vs \
expected speed, GPU offload and GPU memory.
- list_models: the model ids switch_model accepts, which ones run, where each would run \
(engine, gpus), what switching to it would replace (would_replace), how long each usually \
takes to load, and whether each fits in memory now (fit: fits, tight, wont_fit).
- switch_model(model): makes that model ready, stopping only the running models that \
conflict with it (would_replace); the others keep serving. By default it waits until the \
model is ready and sends progress notifications (phase, estimated percentage). With \
wait=false it returns a job id at once; then poll status. A model already ready is left as \
it is. If a switch that conflicts with it is in flight the call is refused: wait for it \
(status), or pass force=true to cancel it. A model that will not fit in memory is refused \
before anything stops (reason wont_fit, with the numbers; fit_model says what would fit; \
force=true loads it anyway). On failure the models it stopped are restored (rollback=true) \
and the error carries the reason, a hint and the last log lines.
- unload_model(model): stops one running model and frees its memory; the others keep serving.
- tail_logs: the llama-server logs. Use it after a failed switch (run="previous" for the run \
before the current one) or to see what a server is doing; model picks one model's lines; \
filter takes a regex.
- fit_model(model): before switching to a large model, whether it fits in GPU and host \
memory (from the GGUF header and the profile's flags), and which n_gpu_layers, --n-cpu-moe \
or ctx_size would fit.

The model endpoint: when models.conf has [proxy] listen, status gives its URL (proxy.url). \
It speaks the OpenAI API (/v1/chat/completions, /v1/embeddings, ...) and the Anthropic \
Messages API (/v1/messages) for every profile at one address: a client just names the model \
(a profile id or alias) and the endpoint loads it on demand, stopping only what conflicts, \
while the request waits. status shows each model's requests there (in flight, queued) and its \
idle unload (ttl). switch_model is still the way to load a model ahead of time.
"""

# Where each phase sits in a typical load, for percentages before any load was timed.
PHASE_FLOOR: dict[str, float] = {
    "queued": 0, "draining": 2, "stopping_previous": 5, "starting": 10, "loading": 15,
    "loading_model": 20, "loading_tensors": 30, "creating_context": 80, "warming_up": 88,
    "model_loaded": 95, "listening": 97,
}


# ---- output models (the daemon's shapes are in llm_mcp.wire) --------------------------


class SwitchResult(Job):
    summary: str = Field(description="one line for people, saying what the switch replaced")
    waited: bool = Field(description="false when wait=false: the job runs on; poll status")


class UnloadResult(Job):
    summary: str = Field(description="one line for people: what stopped, what keeps serving")
    running: list[str] = Field(default_factory=list, description="the models still running after it")


class DaemonInfo(BaseModel):
    pid: int | None = None
    version: str | None = None
    socket: str | None = None
    config: str | None = None


class StatusResult(Status):
    summary: str = Field(description="for people: one line per running model (id, engine, GPUs, state, "
                         "endpoint, requests, ttl), then the GPUs and warnings, then the model "
                         "endpoint's URL (every model, loaded on demand) when the daemon serves it")
    model: Profile | None = Field(None, description="the primary model (loaded or loading): the target of "
                                  "the most recent switch, else the newest running one")
    daemon: DaemonInfo | None = None


class ModelListResult(ModelList):
    summary: str = Field(description="for people: one line per model: where it runs (engine/gpus), whether "
                         "it runs, and what a switch to it would replace")


# ---- helpers ------------------------------------------------------------------------


async def _call(client: DaemonClient, method: str, **params: Any) -> Any:
    """A daemon call whose failures become tool errors an agent can act on."""
    try:
        return await client.call(method, **params)
    except ProtocolError as exc:
        raise tool_error(describe_error(exc)) from None
    except (DaemonUnavailable, ConnectionError, OSError) as exc:
        raise tool_error(_unavailable_text(exc)) from None


def _unavailable_text(exc: BaseException) -> str:
    return (f"the llm-mcp daemon is not available: {exc}\nhint: run `llm-mcp check`; the daemon log is "
            "under the state dir (daemon.log)")


async def _running_ids(client: DaemonClient) -> list[str]:
    status = Status.model_validate(await _call(client, "status", gpu=False))
    return [m.id for m in status.running_models() if m.state not in ("stopped", "failed")]


async def _not_running(client: DaemonClient, model: str, exc: ProtocolError) -> str:
    """unload_model of a model that does not run: say which ones do."""
    valid = exc.data.get("valid")
    running = [str(v) for v in valid] if exc.reason == "not_running" and isinstance(valid, list) \
        else await _running_ids(client)
    what = "is not a model of models.conf" if exc.code == protocol.UNKNOWN_MODEL else "is not running"
    listed = f"running: {', '.join(running)}" if running else "nothing is running"
    return (f"'{model}' {what}; {listed} [reason: {exc.reason or 'not_running'}]\nhint: unload_model takes "
            "the id of a running model (status lists them)")


def tool_error(text: str) -> ToolError:
    """An error an agent reads and a client may print: control characters escaped."""
    return ToolError(visible_lines(text))


def tool_result(value: BaseModel) -> CallToolResult:
    """Structured content keeps the raw strings; the text copy a client may print holds no
    control character (and still parses as the same JSON). A result with a summary (status: one
    line per model) says it first, in a text block of its own, for agents that read text only."""
    data = value.model_dump(mode="json", by_alias=True)
    blocks = [TextContent(type="text", text=json_text(data))]
    summary = data.get("summary")
    if isinstance(summary, str) and summary:
        blocks.insert(0, TextContent(type="text", text=visible_lines(summary)))
    return CallToolResult(content=list(blocks), structured_content=data)


def describe_error(exc: ProtocolError) -> str:
    data = exc.data
    if exc.code == protocol.BUSY and isinstance(data.get("job"), dict):
        job = data["job"]
        kind, target = str(job.get("kind") or "switch"), job.get("profile")
        what = {"switch": f"a switch to '{target}'", "bench": f"a bench (now at '{target}')",
                "stop": "a stop of every model"}.get(kind, f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                                                           f"of '{target}'")
        return (f"busy: {what} that conflicts with this request is in progress (job {job.get('id')}, phase "
                f"{job.get('phase')}, {float(job.get('elapsed') or 0):.1f}s elapsed). Wait for it (status "
                "shows it; switch_model with the same model joins it), or pass force=true to cancel "
                "it and go ahead.")
    text = exc.message
    if data.get("reason") == "wont_fit":
        devices = (data.get("fit") or {}).get("devices") or []
        lines = [f"{text} [reason: wont_fit]"]
        lines += [f"  {d.get('device')}: needs {_gib(d.get('need_bytes'))}, {_gib(d.get('free_bytes'))} free "
                  f"-> {d.get('verdict')}" for d in devices]
        lines.append("hint: fit_model(model) suggests n_gpu_layers, --n-cpu-moe or ctx_size values that fit; "
                     "switch_model with force=true loads it anyway (it may then fail out of memory, and the "
                     "running model is restored)")
        return "\n".join(lines)
    if data.get("reason") == "unknown_job":
        return (f"{text} [reason: unknown_job]\nhint: the daemon restarted during the call (a new daemon "
                "adopts the running container); call status to see what is loaded")
    if exc.code == protocol.UNKNOWN_MODEL:
        valid = data.get("valid") or []
        if valid and "Valid ids" not in text:
            text += f". Valid ids: {', '.join(map(str, valid))}"
        return f"{text}\nhint: call list_models for the ids and what each model is"
    if data.get("reason"):
        text += f" [reason: {data['reason']}]"
    if data.get("hint"):
        text += f"\nhint: {data['hint']}"
    return text


def _gib(value: object) -> str:
    return f"{value / (1 << 30):.2f} GiB" if isinstance(value, int | float) else "unknown"


def percent(job: dict[str, Any]) -> float:
    """Estimated percentage: from past load times when known, at least the phase's usual place."""
    floor = PHASE_FLOOR.get(str(job.get("phase")), 0.0)
    fraction = job.get("progress")
    estimated = float(fraction) * 100 if fraction is not None else 0.0
    return min(99.0, max(floor, estimated))


def progress_message(job: dict[str, Any], pct: float) -> str:
    elapsed = float(job.get("elapsed") or 0)
    estimate = job.get("estimate")
    name = job.get("name") or job.get("profile") or "?"
    if estimate:
        slow = " (slower than usual)" if elapsed > float(estimate) * 1.2 else ""
        return (f"{job.get('phase')} · {pct:.0f}% of ~{float(estimate):.0f}s · {elapsed:.1f}s elapsed{slow}"
                f" · {name}")
    return f"{job.get('phase')} · ~{pct:.0f}% (first load, no estimate yet) · {elapsed:.1f}s elapsed · {name}"


def failure_text(job: dict[str, Any]) -> str:
    name = job.get("name") or job.get("profile")
    if job.get("result") == "cancelled":
        by = job.get("replaced_by")
        return (f"the switch to {name} was cancelled (job {job.get('id')})"
                + (f": replaced by job {by}, a forced switch" if by else "")
                + ". Call status to see what is loaded now.")
    reached = [p.get("phase") for p in job.get("phases", [])
               if p.get("phase") not in ("failed", "restoring_previous", "cancelled")]
    lines = [f"switch to {name} failed: {job.get('message') or job.get('detail') or 'unknown error'} "
             f"[reason: {job.get('reason')}]"]
    if job.get("hint"):
        lines.append(f"hint: {job['hint']}")
    previous = job.get("previous")
    if job.get("restored") is True:
        lines.append(f"the previous model '{previous}' was restored and is ready")
    elif job.get("restored") is False:
        lines.append(f"restoring the previous model '{previous}' failed too: nothing is loaded")
    lines.append(f"job {job.get('id')}, failed after {float(job.get('elapsed') or 0):.1f}s"
                 + (f" in phase {reached[-1]}" if reached else ""))
    shown = failure_log([str(ln) for ln in job.get("log_lines") or []], MAX_LOG_LINES_IN_ERROR)
    lines += shown or ["tail_logs shows the server log"]
    return "\n".join(lines)


def switch_summary(job: dict[str, Any], waited: bool) -> str:
    name = job.get("name") or job.get("profile")
    stops = [str(s) for s in job.get("stops") or [] if s != job.get("profile")]
    replaced = f"; it replaced {', '.join(stops)}" if stops else ""
    if job.get("result") == "ready":
        if job.get("detail") == "already loaded":
            return f"{name} is already loaded and ready"
        took = job.get("load_seconds") or job.get("elapsed")
        return f"{name} is ready (loaded in {float(took or 0):.1f}s){replaced}"
    if not waited:
        stopping = f"; stopping {', '.join(stops)}" if stops else ""
        return (f"switching to {name}: job {job.get('id')}, phase {job.get('phase')}{stopping}; "
                "call status to follow it")
    return f"switch to {name}: {job.get('result') or job.get('phase')}"


def unload_summary(job: dict[str, Any], running: list[str]) -> str:
    name = job.get("name") or job.get("profile")
    left = f"still running: {', '.join(running)}" if running else "nothing else is running"
    if job.get("result") == "stopped":
        return f"{name} ({job.get('profile')}) is stopped; {left}"
    if not job.get("done"):
        return f"{name} is still stopping (job {job.get('id')}); call status to follow it; {left}"
    return f"unload of {name}: {job.get('result')} {job.get('message') or ''}".rstrip() + f"; {left}"


def status_summary(status: dict[str, Any]) -> str:
    """One line for one model (as a single-model daemon always said), one line per model for several."""
    running = Status.model_validate(status).running_models()
    if len(running) > 1:
        return _several_summary(status, running)
    state = status.get("state")
    profile = status.get("profile") or {}
    name = f"{profile.get('name')} ({profile.get('id')})" if profile else None
    where = ""
    if status.get("models") is not None and running:
        where = f" (engine {running[0].engine}, gpus {running[0].gpus})"
    if state == "ready" and name:
        parts = [f"ready: {name} at {status.get('endpoint')}{where}"]
    elif state in ("starting", "loading") and name:
        parts = [f"{state} {name}{where}"]
    elif state == "stopped":
        parts = ["stopped: no model loaded"]
    else:
        parts = [str(state)]
    if status.get("reason") and (state != "ready" or status.get("stale_config")):
        parts.append(str(status["reason"]))
    parts += _job_part(status.get("job")) + _speed_part(status.get("speed"))
    parts += _offload_part(status.get("offload"))
    gpu = status.get("gpu")
    if gpu:
        parts.append(_gpu_line(gpu))
    parts += _last_part(status.get("last_switch")) + _health_parts(status)
    parts += _state_dir_part(status)
    if status.get("hint") and state != "ready":
        parts.append(f"hint: {status['hint']}")
    parts += [f"warning: {w}" for w in status.get("config_warnings") or []]
    if running:
        parts[1:1] = _serving_parts(running[0])
    return "\n".join(visible(line) for line in ["; ".join(parts), *_endpoint_lines(status)])


def _endpoint_lines(status: dict[str, Any]) -> list[str]:
    """The model endpoint: its URL (every model, loaded on demand), or why it is not served."""
    proxy = Status.model_validate(status).proxy
    if proxy is None:
        return []
    if proxy.url:
        return [f"endpoint: {proxy.url} (OpenAI and Anthropic APIs for every model; a request naming a "
                "model loads it on demand)"]
    if proxy.error:
        return [f"endpoint NOT served: {proxy.error}"]
    return []


def _serving_parts(m: RunningModel) -> list[str]:
    """The endpoint's requests for one model, its idle unload, preload."""
    parts = []
    r = m.requests
    if r is not None and (r.in_flight or r.queued):
        parts.append(f"requests {r.in_flight} in flight" + (f", {r.queued} queued" if r.queued else ""))
    if m.ttl is not None:
        of = duration(m.ttl.seconds, compact=True)
        parts.append(f"ttl {duration(m.ttl.remaining, compact=True)} left of {of} idle"
                     if m.ttl.remaining is not None else f"ttl {of} idle (paused while requests run)")
    if m.preload:
        parts.append("preloaded at daemon start")
    return parts


def model_line(m: RunningModel) -> str:
    """One running model for people: id, state, engine, GPUs, endpoint, then what is notable."""
    raw = m.model_dump(mode="json")
    head = " · ".join([f"{m.id} ({m.name or m.id}): {m.state}", f"engine {m.engine}", f"gpus {m.gpus}",
                       m.endpoint or "no endpoint"])
    parts = [head, *_serving_parts(m)]
    if m.reason and (m.state != "ready" or m.stale_config):
        parts.append(m.reason)
    parts += _job_part(raw.get("job")) + _speed_part(raw.get("speed")) + _offload_part(raw.get("offload"))
    parts += _last_part(raw.get("last_switch")) + _health_parts(raw)
    if m.hint and m.state != "ready":
        parts.append(f"hint: {m.hint}")
    return "; ".join(parts)


def _several_summary(status: dict[str, Any], running: list[RunningModel]) -> str:
    ready = sum(m.state == "ready" for m in running)
    lines = [f"{len(running)} models ({ready} ready):"] + [f"- {model_line(m)}" for m in running]
    listed = {m.job.id for m in running if m.job is not None}
    others = [j.model_dump(mode="json") for j in Status.model_validate(status).jobs_in_flight()
              if j.id not in listed]
    tail = [p for j in others for p in _job_part(j)]
    if status.get("gpu"):
        tail.append(_gpu_line(status["gpu"]))
    tail += _state_dir_part(status)
    tail += [f"warning: {w}" for w in status.get("config_warnings") or []]
    if tail:
        lines.append("; ".join(tail))
    lines += _endpoint_lines(status)
    return "\n".join(visible(line) for line in lines)  # a newline inside a field stays escaped


def _job_part(job: dict[str, Any] | None) -> list[str]:
    if not job:
        return []
    return [f"{job.get('kind')} job {job.get('id')}: {progress_message(job, percent(job))}"]


def _speed_part(speed: dict[str, Any] | None) -> list[str]:
    if not speed or speed.get("measured_tps") is None:
        return []
    expected = speed.get("expected_tps")
    verdict = {True: "as expected", False: "SLOWER than expected", None: "no expected speed set"}
    versus = f" vs {expected:g} expected ({verdict[speed.get('as_expected')]})" if expected else ""
    return [f"speed {speed['measured_tps']:g} t/s{versus}"]


def _offload_part(offload: dict[str, Any] | None) -> list[str]:
    if not offload:
        return []
    match = {True: "matches the profile", False: "DOES NOT match the profile",
             None: ""}[offload.get("matches")]
    return [f"offload {offload['layers']}/{offload['total']} layers {match}".rstrip()]


def _last_part(last: dict[str, Any] | None) -> list[str]:
    if last and last.get("result") == "failed":
        return [f"last switch to {last.get('profile')} failed ({last.get('reason')})"]
    return []


def _health_parts(d: dict[str, Any]) -> list[str]:
    if d.get("health") != "unresponsive":
        return []
    detail = d.get("health_detail") or {}
    parts = [f"NOT ANSWERING: {detail.get('message') or 'the server does not answer /health'}"]
    if detail.get("hint"):
        parts.append(f"hint: {detail['hint']}")
    return parts


def _state_dir_part(status: dict[str, Any]) -> list[str]:
    state_dir = status.get("state_dir") or {}
    if state_dir.get("writable") is False:
        return [f"state dir NOT WRITABLE ({state_dir.get('error')}): logs kept in memory only"]
    return []


def models_summary(models: list[ModelEntry]) -> str:
    """One line per profile: whether it runs, where, and what a switch to it would replace."""
    lines = []
    for m in models:
        where = m.where + (", exclusive" if m.exclusive else "")
        if m.is_running:
            what = f"{m.running or 'running'} on {where}"
        else:
            replaces = (f"a switch replaces {', '.join(m.would_replace)}" if m.would_replace
                        else "a switch stops nothing")
            what = f"not running; would run on {where}; {replaces}"
        fit = f"; fit {m.fit.verdict}" if m.fit is not None and m.fit.verdict != "fits" else ""
        lines.append(f"{m.id} ({m.name or m.id}): {what}{fit}")
    return "\n".join(visible(line) for line in lines)  # a newline inside a field stays escaped


def _gpu_line(gpu: dict[str, Any]) -> str:
    if not gpu.get("available"):
        return f"GPU: none visible ({gpu.get('reason') or 'unknown'})"
    out = []
    for g in gpu.get("gpus", []):
        used, total = g.get("memory_used_mib"), g.get("memory_total_mib")
        memory = f" {used / 1024:.1f}/{total / 1024:.1f} GiB" if used is not None and total else ""
        util = f" {g['utilization_pct']:.0f}%" if g.get("utilization_pct") is not None else ""
        out.append(f"GPU{g.get('index')} {g.get('name') or ''}{memory}{util}".strip())
    return "; ".join(out) or "GPU: none"


# ---- the server ---------------------------------------------------------------------


def make_server(client: DaemonClient) -> MCPServer:
    """The MCP server over an entered DaemonClient (the caller owns its lifetime)."""
    server: MCPServer = MCPServer("llm-mcp", version=__version__, instructions=INSTRUCTIONS,
                                  log_level="WARNING")

    async def list_models() -> Annotated[CallToolResult, ModelListResult]:
        """The model profiles of models.conf: the ids switch_model accepts, which ones run
        (running: their state), where each runs (engine, gpus, exclusive), what switching to it
        would stop (would_replace: the running models that conflict with it; the others keep
        serving), each one's context size, GPU layers, expected speed, usual load time and
        whether it fits in memory now (fit)."""
        data = await _call(client, "list_models")
        models = [ModelEntry.model_validate(m) for m in data.get("models", [])]
        current = next((m.id for m in models if m.is_running), None)
        return tool_result(ModelListResult(models=models, current=current, summary=models_summary(models)))

    async def status() -> Annotated[CallToolResult, StatusResult]:
        """Every running model (models: id, engine, GPUs, state, endpoint, health, speed, memory,
        the job in flight, requests in flight and queued, ttl left), how the last switch ended,
        measured vs expected speed, GPU offload vs the profile, and a GPU summary. The top-level
        state, model and endpoint describe the primary model (the target of the latest switch).
        proxy.url: the OpenAI/Anthropic endpoint for every model; a request there that names a
        model loads it on demand. Call it before switching."""
        data = await _call(client, "status", gpu=True)
        hello = client.hello
        wire = Status.model_validate(data)
        return tool_result(StatusResult.model_validate({
            **data,
            "models": [m.model_dump(mode="json") for m in wire.running_models()],
            "summary": status_summary(data),
            "model": data.get("profile"),
            "daemon": {"pid": hello.get("pid"), "version": hello.get("version"),
                       "socket": hello.get("socket"), "config": hello.get("config")},
        }))

    async def switch_model(
        model: Annotated[str, Field(description="the model id to load (list_models gives the ids)")],
        ctx: Context[Any, Any],
        *,
        wait: Annotated[bool, Field(description="wait until the model is ready, with progress "
                                    "notifications; false returns the job id at once (poll status)")] = True,
        timeout: Annotated[float, Field(description="seconds to wait when wait=true; the switch itself "
                                        "goes on in the daemon after that", gt=0, le=86400)] = 900,
        force: Annotated[bool, Field(description="replace a switch in flight, do not wait for "
                                     "running generations to finish, and load even when the pre-flight "
                                     "says it will not fit")] = False,
        rollback: Annotated[bool, Field(description="on failure, restore the models it "
                                        "stopped")] = True,
    ) -> Annotated[CallToolResult, SwitchResult]:
        """Make a model ready, stopping only the running models that conflict with it (the same
        GPU or fixed port on the same engine, or an exclusive profile: list_models shows them as
        would_replace); every other model keeps serving, and every client shares them. Waits
        until it is ready and reports progress (phase and estimated percentage); the result's
        stops lists what it replaced. A no-op when the model is already ready. A request for a
        model already loading joins that switch; one that conflicts with a switch in flight is
        refused unless force=true. A model that will not fit in memory is refused before
        anything stops (wont_fit, with the numbers), unless force=true. On failure the error
        gives the reason, a hint and the last log lines, and what it stopped is restored."""
        job = await _call(client, "switch", model=model, force=force, rollback=rollback, wait=False)
        if not wait:
            return _switch_result(job, waited=False)
        deadline = time.monotonic() + timeout
        reporter = _ProgressReporter(ctx)
        while not job.get("done"):
            await reporter.report(job)
            left = deadline - time.monotonic()
            if left <= 0:
                raise tool_error(
                    f"{job.get('name') or model} is still in phase {job.get('phase')} after waiting "
                    f"{timeout:g}s [reason: wait_timeout]; the switch goes on in the daemon (job "
                    f"{job.get('id')}).\nhint: call status to follow it, or switch_model with the same "
                    "model to wait again")
            job = await _call(client, "job", id=job["id"], wait=True, timeout=min(POLL_SECONDS, left))
        if job.get("result") != "ready":
            raise tool_error(failure_text(job))
        await reporter.finish(job)
        return _switch_result(job, waited=True)

    async def tail_logs(
        lines: Annotated[int, Field(description="how many lines (the last ones)", ge=1, le=10000)] = 100,
        filter: Annotated[str | None, Field(description="only lines matching this regex "
                                            "(case-insensitive)")] = None,
        run: Annotated[Literal["current", "previous", "all"],
                       Field(description="current: the running container; previous: the one before "
                             "it (after a failed switch); all: every run with switch separators")
                       ] = "current",
        model: Annotated[str | None, Field(description="only this model's lines (and llm-mcp's notes "
                                           "about it); default: every model's")] = None,
    ) -> Annotated[CallToolResult, Logs]:
        """The llama-server logs, kept across switches and daemon restarts; each line names the
        model that printed it. Use it after a failed switch (run="previous" is the run before
        the current one) or to see what a server is doing."""
        params: dict[str, Any] = {"lines": lines, "filter": filter or "", "run": run}
        if model:
            params["model"] = model
        data = await _call(client, "tail_logs", **params)
        return tool_result(Logs.model_validate(data))

    async def unload_model(
        model: Annotated[str, Field(description="the id of a running model (status lists them)")],
        *,
        force: Annotated[bool, Field(description="do not wait for running generations to finish, and "
                                     "cancel a load of it in flight")] = False,
    ) -> Annotated[CallToolResult, UnloadResult]:
        """Stop one running model and free its memory; every other model keeps serving. Waits
        until its container is gone. A model that is not running is an error that lists the
        running ones."""
        try:
            job = await client.call("unload", model=model, force=force, wait=True)
        except ProtocolError as exc:
            if exc.reason in ("not_running", "unknown_model") or exc.code in (protocol.NOT_FOUND,
                                                                                protocol.UNKNOWN_MODEL):
                raise tool_error(await _not_running(client, model, exc)) from None
            raise tool_error(describe_error(exc)) from None
        except (DaemonUnavailable, ConnectionError, OSError) as exc:
            raise tool_error(_unavailable_text(exc)) from None
        running = await _running_ids(client)
        summary = visible(unload_summary(job, running))
        return tool_result(UnloadResult.model_validate({**job, "running": running, "summary": summary}))

    read_only: dict[str, bool] = {"read_only_hint": True, "open_world_hint": False}
    tools: list[tuple[Callable[..., Any], str, dict[str, bool]]] = [
        (list_models, "List models", read_only),
        (status, "Status", read_only),
        (switch_model, "Switch model", {"read_only_hint": False, "destructive_hint": True,
                                        "idempotent_hint": True, "open_world_hint": False}),
        (unload_model, "Unload model", {"read_only_hint": False, "destructive_hint": True,
                                        "idempotent_hint": True, "open_world_hint": False}),
        (tail_logs, "Tail logs", read_only),
    ]
    for fn, title, hints in tools:
        server.add_tool(fn, title=title, description=" ".join((fn.__doc__ or "").split()),
                        annotations=ToolAnnotations(title=title, **hints))
    add_fit_tool(server, client)
    return server


def _switch_result(job: dict[str, Any], *, waited: bool) -> CallToolResult:
    summary = visible(switch_summary(job, waited))
    return tool_result(SwitchResult.model_validate({**job, "waited": waited, "summary": summary}))


class _ProgressReporter:
    """Progress notifications: percentages never go down, the progress value always goes up."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self.ctx = ctx
        self.pct = 0.0
        self.value = -1.0

    async def report(self, job: dict[str, Any]) -> None:
        self.pct = max(self.pct, percent(job))
        self.value = round(max(self.pct, self.value + 0.001), 3)  # the spec wants it to increase
        await self.ctx.report_progress(self.value, 100, visible(progress_message(job, self.pct)))

    async def finish(self, job: dict[str, Any]) -> None:
        took = float(job.get("load_seconds") or job.get("elapsed") or 0)
        await self.ctx.report_progress(100, 100, visible(f"ready · 100% · {took:.1f}s · "
                                                         f"{job.get('name') or job.get('profile')}"))


# ---- entry point --------------------------------------------------------------------


def check_bind(host: str, allow_remote: bool) -> None:
    """Loopback only, unless the user asked for more."""
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to serve MCP on {host}: it is not a loopback address, and the "
                         "tools can replace the running model; pass --allow-remote to do it anyway")


def run_serve(transport: Literal["stdio", "http"], host: str, port: int, socket_path: Path,
              config_path: Path | None, *, allow_remote: bool = False) -> int:
    """Serve MCP until stdin closes (stdio) or the process is stopped (http)."""
    # stdout carries the protocol: everything else goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="llm-mcp serve: %(levelname)s %(name)s: %(message)s")
    if transport == "http":
        try:
            check_bind(host, allow_remote)
        except ValueError as exc:
            print(f"llm-mcp serve: {exc}", file=sys.stderr)
            return 2

    async def main() -> None:
        async with DaemonClient(socket_path, config_path=config_path, name="mcp") as client:
            server = make_server(client)
            if transport == "stdio":
                await server.run_stdio_async()
            else:
                print(f"llm-mcp serve: MCP on http://{host}:{port}/mcp", file=sys.stderr)
                await server.run_streamable_http_async(host=host, port=port)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
    return 0


# ---- fit_model: memory estimate for a profile (docs/fit.md) ----------------------------


class FitDevice(BaseModel):
    device: str = Field(description='"host" or "gpuN"')
    weights: int = Field(description="bytes of model weights on this device")
    kv: int = Field(description="bytes of KV cache")
    compute: int = Field(description="bytes of compute buffer")
    overhead: int = Field(description="bytes of runtime overhead (a stated constant)")
    total: int
    band: int = Field(description="the estimate's own error, in bytes, either way")
    free: int | None = Field(default=None, description="free bytes on this device, when known")
    verdict: Literal["fits", "tight", "wont_fit"] | None = None


class FitSuggestion(BaseModel):
    n_gpu_layers: int | None = Field(default=None, description="largest n_gpu_layers that fits")
    n_cpu_moe: int | None = Field(default=None, description="smallest --n-cpu-moe that fits (MoE)")
    expert_cutoff: int | None = Field(default=None, description="largest block cutoff for experts on CPU")
    expert_cutoff_override: str | None = Field(default=None, description="the override_tensor value for it")
    ctx_size: int | None = Field(default=None, description="largest ctx_size that fits as configured")


class FitResult(BaseModel):
    profile: str
    fit: Literal["fits", "tight", "wont_fit"] = Field(description="the worst device's verdict")
    devices: list[FitDevice]
    suggestions: FitSuggestion | None = Field(default=None, description="present when it does not fit "
                                              "or leaves much of the GPU unused")
    notes: list[str] = []
    summary: str


def add_fit_tool(server: MCPServer, client: DaemonClient) -> None:
    """Register fit_model. It reads the model's GGUF header here; GPU figures come from the daemon."""

    async def fit_model(
        model: Annotated[str, Field(description="the model id (list_models gives the ids)")],
        free_gpu_bytes: Annotated[int | None, Field(description="free GPU memory to assume, in bytes; "
                                                    "default: the daemon's GPU sample, counting the "
                                                    "running model's memory as free", ge=0)] = None,
    ) -> FitResult:
        """Whether a model fits in memory before loading it: weights, KV cache, compute buffer and
        overhead per GPU and for the host, estimated from the GGUF header and the profile's flags
        (n_gpu_layers, override_tensor, --n-cpu-moe, ctx_size, cache types), a verdict (fits, tight,
        wont_fit) and, when it does not fit, the largest n_gpu_layers, smallest --n-cpu-moe and
        largest ctx_size that would."""
        import psutil

        from llm_mcp.config.models_conf import ConfigError, UnknownProfileError, load_config
        from llm_mcp.hardware import fit

        config = client.hello.get("config") or (str(client.config_path) if client.config_path else None)
        if not config:
            raise tool_error("the daemon did not say which models.conf it uses\nhint: run `llm-mcp check`")
        try:
            profile = load_config(Path(config)).profile(model)
        except UnknownProfileError as exc:
            raise tool_error(exc.message) from None
        except ConfigError as exc:
            raise tool_error(f"models.conf: {exc}") from None
        free: dict[str, int] = {"host": psutil.virtual_memory().available}
        n_gpus = 0
        if free_gpu_bytes is not None:
            free["gpu0"] = free_gpu_bytes
            n_gpus = 1
        else:
            gpu = (await _call(client, "status", gpu=True)).get("gpu") or {}
            if gpu.get("available"):
                free.update(fit.free_from_gpu_samples(gpu.get("gpus") or []))
                n_gpus = len(gpu.get("gpus") or [])
        try:
            report = await anyio.to_thread.run_sync(lambda: fit.fit_profile(profile, free, n_gpus=n_gpus))
        except fit.FitError as exc:
            raise tool_error(f"{exc}\nhint: run `llm-mcp check`") from None
        devices = [FitDevice.model_validate({**d.to_dict(), "free": free.get(d.device),
                                             "verdict": report.verdict.per_device.get(d.device)})
                   for d in report.estimate.devices]
        hints = FitSuggestion.model_validate(report.suggestions.to_dict()) if report.suggestions else None
        return FitResult(profile=profile.id, fit=report.verdict.fit, devices=devices, suggestions=hints,
                         notes=list(report.estimate.notes), summary=fit.render(report))

    title = "Fit model"
    server.add_tool(fit_model, title=title, description=" ".join((fit_model.__doc__ or "").split()),
                    annotations=ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False))
