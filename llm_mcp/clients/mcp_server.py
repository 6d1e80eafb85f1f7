"""`llm-mcp serve`: the MCP server, a thin client of the daemon.

Four tools (list_models, status, switch_model, tail_logs) over stdio or
streamable HTTP. The server owns nothing: every call goes to the daemon through
the socket, so several `serve` processes share one model, and a cancelled
switch_model call leaves the job running in the daemon.

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
from llm_mcp.util.terminal_text import json_text, visible, visible_lines

log = logging.getLogger("llm_mcp.clients.mcp_server")

POLL_SECONDS = 1.0  # one progress notification per poll of the job
MAX_LOG_LINES_IN_ERROR = 25

INSTRUCTIONS = """\
llm-mcp runs one local llama.cpp server (llama-server in Docker) at a time and switches it \
between the model profiles of models.conf. Every client shares that one server.

- status: call it first, and whenever unsure. It says what is loaded and where (endpoint), \
whether it is ready, a switch in flight, how the last switch ended, measured vs expected \
speed, GPU offload and GPU memory.
- list_models: the model ids switch_model accepts, which one is current, how long each \
usually takes to load, and whether each fits in memory now (fit: fits, tight, wont_fit).
- switch_model(model): replaces the running model. By default it waits until the new model \
is ready and sends progress notifications (phase, estimated percentage). With wait=false it \
returns a job id at once; then poll status. Switching to the model already loaded does \
nothing. If another switch is in flight the call is refused: wait for it (status), or pass \
force=true to cancel it. A model that will not fit in memory is refused before anything \
stops (reason wont_fit, with the numbers; fit_model says what would fit; force=true loads it \
anyway). On failure the previous model is restored (rollback=true) and the error carries the \
reason, a hint and the last log lines.
- tail_logs: the llama-server log. Use it after a failed switch (run="previous" for the run \
before the current one) or to see what the server is doing; filter takes a regex.
- fit_model(model): before switching to a large model, whether it fits in GPU and host \
memory (from the GGUF header and the profile's flags), and which n_gpu_layers, --n-cpu-moe \
or ctx_size would fit.
"""

# Where each phase sits in a typical load, for percentages before any load was timed.
PHASE_FLOOR: dict[str, float] = {
    "queued": 0, "draining": 2, "stopping_previous": 5, "starting": 10, "loading": 15,
    "loading_model": 20, "loading_tensors": 30, "creating_context": 80, "warming_up": 88,
    "model_loaded": 95, "listening": 97,
}


# ---- output models ------------------------------------------------------------------

GpuLayers = Annotated[int | Literal["all", "auto"] | None, Field(
    description="the profile's n_gpu_layers: a layer count, \"all\" or \"auto\"; null: the image's default")]


class Spread(BaseModel):
    median: float
    min: float
    max: float


class Measured(BaseModel):
    date: float = Field(description="when it was measured (unix time)")
    image: str = Field(description="the llama-server image it ran on")
    runs: int = Field(description="measured runs (after one warm-up)")
    prompt_tokens: int
    gen_tokens: int
    load_seconds: Spread
    prompt_tps: Spread = Field(description="prompt processing, tokens/s (llama-server's timings)")
    gen_tps: Spread = Field(description="generation, tokens/s (llama-server's timings)")
    memory_bytes: int | None = Field(None, description="memory the model used")
    memory_source: Literal["nvml", "container"] | None = Field(
        None, description="nvml: GPU memory of its processes; container: the container's memory")


class FitDeviceVerdict(BaseModel):
    device: str = Field(description='"host" or "gpuN"')
    need_bytes: int = Field(description="what the profile needs there (the estimate's total)")
    free_bytes: int | None = Field(description="free there for a switch: free now plus what the running "
                                   "model holds; null if unknown")
    verdict: Literal["fits", "tight", "wont_fit", "unknown"]


class ProfileFit(BaseModel):
    verdict: Literal["fits", "tight", "wont_fit", "unknown"] = Field(
        description="fits; tight (within the estimate's error band); wont_fit (switch_model refuses it "
        "unless force=true); unknown (see error)")
    message: str = Field(description="one line: the deciding device, what it needs, what is free")
    devices: list[FitDeviceVerdict] = Field(default_factory=list)
    error: str | None = Field(None, description="why the verdict is unknown (model file unreadable, ...)")


class ModelEntry(BaseModel):
    id: str = Field(description="the id switch_model takes")
    name: str = Field(description="display name")
    description: str = ""
    model: str = Field(description="the GGUF file under models_dir")
    model_present: bool = Field(description="whether the model file exists")
    current: bool = Field(description="whether this is the loaded model")
    ctx_size: int | None = None
    n_gpu_layers: GpuLayers = None
    override_tensor: str | None = Field(None, description="the -ot regex (tensor placement)")
    batch_size: int | None = None
    ubatch_size: int | None = None
    flags: list[str] = Field(default_factory=list, description="extra llama-server arguments")
    speed: float | None = Field(None, description="expected generation speed, tokens/s")
    bench: bool = False
    estimated_load_seconds: float | None = Field(
        None, description="median of recent loads; null before the first")
    fit: ProfileFit | None = Field(None, description="pre-flight: does it fit in GPU and host memory, "
                                   "counting the running model's memory as free (it would be replaced)")
    measured: Measured | None = Field(None, description="the latest `llm-mcp bench` of this profile as "
                                      "configured now (same image and flags); null if none")


class ModelList(BaseModel):
    models: list[ModelEntry]
    current: str | None = Field(description="id of the loaded model, or null")


class PhaseMark(BaseModel):
    phase: str
    at: float = Field(description="seconds after the job began")


class JobInfo(BaseModel):
    id: str = Field(description="job id; status reports on it")
    kind: str = Field(description="switch | stop | adopt | crash | bench (`llm-mcp bench`: profile is "
                      "the one being measured)")
    profile: str | None = Field(description="target model id")
    name: str = Field("", description="target model's display name")
    phase: str = Field(description="queued, draining, stopping_previous, starting, loading, loading_model, "
                       "loading_tensors, creating_context, model_loaded, listening, restoring_previous, "
                       "then the result")
    phases: list[PhaseMark] = Field(default_factory=list)
    elapsed: float = Field(description="seconds since the job began")
    estimate: float | None = Field(None, description="expected load seconds (past loads); null if unknown")
    progress: float | None = Field(None, description="estimated fraction done, 0..1; null if unknown")
    done: bool
    result: str | None = Field(None, description="ready | failed | cancelled | stopped (a bench: done | "
                               "failed); null while running")
    reason: str | None = Field(None, description="why it failed: a stable code")
    message: str | None = None
    hint: str | None = Field(None, description="what to do about the failure")
    detail: str = ""
    log_lines: list[str] = Field(default_factory=list, description="last log lines of a failed load")
    previous: str | None = Field(None, description="the model to restore on failure")
    restored: bool | None = Field(None, description="whether the previous model was restored")
    replaced_by: str | None = Field(None, description="the job that cancelled this one")
    load_seconds: float | None = None


class SwitchResult(JobInfo):
    summary: str = Field(description="one line for people")
    waited: bool = Field(description="false when wait=false: the job runs on; poll status")


class LoadedModel(BaseModel):
    id: str
    name: str
    model: str
    ctx_size: int | None = None
    n_gpu_layers: GpuLayers = None
    override_tensor: str | None = None
    speed: float | None = None


class ContainerInfo(BaseModel):
    id: str
    name: str = ""
    image: str = ""
    uptime: float | None = Field(None, description="seconds")


class SpeedInfo(BaseModel):
    measured_tps: float | None = Field(None, description="measured generation speed, tokens/s")
    expected_tps: float | None = Field(None, description="the profile's 'speed'")
    ratio: float | None = None
    as_expected: bool | None = Field(None, description="measured >= 80% of expected")
    source: str | None = Field(None, description="verification (a test completion), log, or bench "
                               "(the stored `llm-mcp bench` result)")
    bench_tps: float | None = Field(None, description="the bench's median generation speed, tokens/s")


class OffloadInfo(BaseModel):
    layers: int = Field(description="layers llama-server put on the GPU")
    total: int
    expected: GpuLayers = None
    matches: bool | None = None


class GpuInfo(BaseModel):
    index: int
    name: str | None = None
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: int | None = None
    power_w: float | None = None


class GpuSummary(BaseModel):
    available: bool
    reason: str | None = Field(None, description="why no GPU is visible")
    driver_version: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)


class DaemonInfo(BaseModel):
    pid: int | None = None
    version: str | None = None
    socket: str | None = None
    config: str | None = None


class DockerState(BaseModel):
    available: bool = Field(description="false while the Docker Engine does not answer; the daemon "
                            "reconnects by itself and adopts the running container again")
    since: float | None = Field(None, description="unix time of the last change")
    message: str | None = None
    hint: str | None = None


class StateDir(BaseModel):
    path: str
    writable: bool = Field(description="false when run logs or load times cannot be saved (full or "
                           "read-only disk); logs are then kept in memory only")
    error: str | None = None


class HealthDetail(BaseModel):
    status: str | None = None
    since: float | None = None
    message: str | None = None
    hint: str | None = None


class Status(BaseModel):
    summary: str = Field(description="one line for people")
    state: str = Field(description="stopped | starting | loading | ready | stopping | failed")
    reason: str | None = None
    reason_code: str | None = Field(None, description="machine-readable reason, e.g. docker_unavailable, "
                                    "switch_interrupted")
    hint: str | None = None
    docker: DockerState | None = None
    state_dir: StateDir | None = None
    since: float | None = Field(None, description="unix time of the last state change")
    model: LoadedModel | None = Field(None, description="the loaded (or loading) model")
    endpoint: str | None = Field(None, description="llama-server's base URL (OpenAI-compatible /v1)")
    container: ContainerInfo | None = None
    health: str | None = Field(None, description="ok | loading | unresponsive (ready but not answering "
                               "/health: paused or hung) | error")
    health_detail: HealthDetail | None = None
    stale_config: bool = Field(False, description="models.conf changed since the model started")
    job: JobInfo | None = Field(None, description="the switch in flight, if any")
    last_switch: JobInfo | None = Field(None, description="how the last job ended")
    speed: SpeedInfo | None = None
    offload: OffloadInfo | None = None
    gpu: GpuSummary | None = None
    daemon: DaemonInfo | None = None
    config_warnings: list[str] = Field(default_factory=list, description="valid but risky models.conf "
                                       "settings (file:line: [section] key: why)")


class LogLine(BaseModel):
    seq: int
    time: float = Field(description="unix time")
    run: str = Field(description="container id; empty for llm-mcp's own notes and separators")
    kind: str = Field(description="log | separator | note")
    text: str


class Logs(BaseModel):
    run: str
    lines: list[LogLine]
    truncated: bool = Field(False, description="true when older matching lines were left out to keep "
                            "the reply small; ask for fewer lines")
    omitted: int = Field(0, description="how many matching lines were left out")


# ---- helpers ------------------------------------------------------------------------


async def _call(client: DaemonClient, method: str, **params: Any) -> Any:
    """A daemon call whose failures become tool errors an agent can act on."""
    try:
        return await client.call(method, **params)
    except ProtocolError as exc:
        raise tool_error(describe_error(exc)) from None
    except (DaemonUnavailable, ConnectionError, OSError) as exc:
        raise tool_error(f"the llm-mcp daemon is not available: {exc}\nhint: run `llm-mcp check`; the "
                         "daemon log is under the state dir (daemon.log)") from None


def tool_error(text: str) -> ToolError:
    """An error an agent reads and a client may print: control characters escaped."""
    return ToolError(visible_lines(text))


def tool_result(value: BaseModel) -> CallToolResult:
    """Structured content keeps the raw strings; the text copy a client may print holds no
    control character (and still parses as the same JSON)."""
    data = value.model_dump(mode="json", by_alias=True)
    return CallToolResult(content=[TextContent(type="text", text=json_text(data))], structured_content=data)


def describe_error(exc: ProtocolError) -> str:
    data = exc.data
    if exc.code == protocol.BUSY and isinstance(data.get("job"), dict):
        job = data["job"]
        return (f"busy: a switch to '{job.get('profile')}' is in progress (job {job.get('id')}, phase "
                f"{job.get('phase')}, {float(job.get('elapsed') or 0):.1f}s elapsed). Wait for it (status "
                "shows it; switch_model with the same model joins it), or pass force=true to cancel "
                "it and switch anyway.")
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
    if job.get("result") == "ready":
        if job.get("detail") == "already loaded":
            return f"{name} is already loaded and ready"
        took = job.get("load_seconds") or job.get("elapsed")
        return f"{name} is ready (loaded in {float(took or 0):.1f}s)"
    if not waited:
        return (f"switching to {name}: job {job.get('id')}, phase {job.get('phase')}; "
                "call status to follow it")
    return f"switch to {name}: {job.get('result') or job.get('phase')}"


def status_summary(status: dict[str, Any]) -> str:
    state = status.get("state")
    profile = status.get("profile") or {}
    name = f"{profile.get('name')} ({profile.get('id')})" if profile else None
    if state == "ready" and name:
        parts = [f"ready: {name} at {status.get('endpoint')}"]
    elif state in ("starting", "loading") and name:
        parts = [f"{state} {name}"]
    elif state == "stopped":
        parts = ["stopped: no model loaded"]
    else:
        parts = [str(state)]
    if status.get("reason") and (state != "ready" or status.get("stale_config")):
        parts.append(str(status["reason"]))
    job = status.get("job")
    if job:
        parts.append(f"{job.get('kind')} job {job.get('id')}: {progress_message(job, percent(job))}")
    speed = status.get("speed") or {}
    if speed.get("measured_tps") is not None:
        expected = speed.get("expected_tps")
        verdict = {True: "as expected", False: "SLOWER than expected", None: "no expected speed set"}
        versus = f" vs {expected:g} expected ({verdict[speed.get('as_expected')]})" if expected else ""
        parts.append(f"speed {speed['measured_tps']:g} t/s{versus}")
    offload = status.get("offload")
    if offload:
        match = {True: "matches the profile", False: "DOES NOT match the profile",
                 None: ""}[offload.get("matches")]
        parts.append(f"offload {offload['layers']}/{offload['total']} layers {match}".rstrip())
    gpu = status.get("gpu")
    if gpu:
        parts.append(_gpu_line(gpu))
    last = status.get("last_switch")
    if last and last.get("result") == "failed":
        parts.append(f"last switch to {last.get('profile')} failed ({last.get('reason')})")
    if status.get("health") == "unresponsive":
        detail = status.get("health_detail") or {}
        parts.append(f"NOT ANSWERING: {detail.get('message') or 'the server does not answer /health'}")
        if detail.get("hint"):
            parts.append(f"hint: {detail['hint']}")
    state_dir = status.get("state_dir") or {}
    if state_dir.get("writable") is False:
        parts.append(f"state dir NOT WRITABLE ({state_dir.get('error')}): logs kept in memory only")
    if status.get("hint") and state != "ready":
        parts.append(f"hint: {status['hint']}")
    parts += [f"warning: {w}" for w in status.get("config_warnings") or []]
    return visible("; ".join(parts))


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

    async def list_models() -> Annotated[CallToolResult, ModelList]:
        """The model profiles of models.conf: the ids switch_model accepts, which one is loaded,
        each one's context size, GPU layers, expected speed, usual load time and whether it fits
        in memory now (fit)."""
        data = await _call(client, "list_models")
        models = [ModelEntry.model_validate(m) for m in data.get("models", [])]
        return tool_result(ModelList(models=models, current=next((m.id for m in models if m.current), None)))

    async def status() -> Annotated[CallToolResult, Status]:
        """What is loaded and whether it is ready: state, model, endpoint, the switch in flight
        (job, phase, estimated percentage), how the last switch ended, measured vs expected
        speed, GPU offload vs the profile, and a GPU summary. Call it before switching."""
        data = await _call(client, "status", gpu=True)
        hello = client.hello
        return tool_result(Status.model_validate({
            **data,
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
        rollback: Annotated[bool, Field(description="on failure, restore the model that was "
                                        "loaded before")] = True,
    ) -> Annotated[CallToolResult, SwitchResult]:
        """Load a model, replacing the one running (one model runs at a time, shared by every
        client). Waits until it is ready and reports progress (phase and estimated percentage);
        a no-op when the model is already loaded. A request for the model already loading joins
        that switch; one for another model is refused unless force=true. A model that will not
        fit in memory is refused before anything stops (wont_fit, with the numbers), unless
        force=true. On failure the error gives the reason, a hint and the last log lines, and the
        previous model is restored."""
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
    ) -> Annotated[CallToolResult, Logs]:
        """The llama-server log, kept across switches and daemon restarts. Use it after a failed
        switch (run="previous" is the run before the current one) or to see what the server
        is doing."""
        data = await _call(client, "tail_logs", lines=lines, filter=filter or "", run=run)
        return tool_result(Logs.model_validate(data))

    read_only: dict[str, bool] = {"read_only_hint": True, "open_world_hint": False}
    tools: list[tuple[Callable[..., Any], str, dict[str, bool]]] = [
        (list_models, "List models", read_only),
        (status, "Status", read_only),
        (switch_model, "Switch model", {"read_only_hint": False, "destructive_hint": True,
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
