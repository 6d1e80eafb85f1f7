"""The daemon's answers, typed once: status, running model, job, model entry, log line, engine.

The MCP server's output schemas and the CLI, the monitor and the HTTP API's readers
use these (docs/protocol.md has the fields in prose). Every model is tolerant:
unknown fields are kept (extra="allow") and almost every field has a default, so a
newer daemon never breaks an older client, and a client reads an older daemon's
single-model status through `Status.running_models()`.

A leaf module: pydantic and the standard library only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ContainerSummary", "DockerState", "Engine", "FitDeviceVerdict", "GpuInfo", "GpuLayers", "GpuSummary",
    "HealthDetail", "Job", "LogLine", "Logs", "Measured", "ModelEntry", "ModelList", "OffloadInfo",
    "PhaseMark", "Profile", "ProfileFit", "ProxyInfo", "Requests", "RunningModel", "SpeedInfo", "Spread",
    "StateDir", "Status", "Ttl", "Wire",
]

RUNNING_STATES = ("starting", "loading", "ready", "stopping", "unreachable")  # a container is there


class Wire(BaseModel):
    # allow: a field a newer daemon adds survives a round trip and is never an error
    model_config = ConfigDict(extra="allow")


GpuLayers = Annotated[int | str | None, Field(
    description="the profile's n_gpu_layers: a layer count, \"all\" or \"auto\"; null: the image's default")]


# ---- the profile and the pre-flight ---------------------------------------------------


class Profile(Wire):
    """A models.conf profile as the daemon describes it."""

    id: str = Field(description="the model id switch_model takes")
    name: str = Field("", description="display name")
    model: str = Field("", description="the GGUF file under models_dir")
    description: str = ""
    ctx_size: int | None = None
    n_gpu_layers: GpuLayers = None
    override_tensor: str | None = Field(None, description="the -ot regex (tensor placement)")
    batch_size: int | None = None
    ubatch_size: int | None = None
    flags: list[str] = Field(default_factory=list, description="extra llama-server arguments")
    speed: float | None = Field(None, description="expected generation speed, tokens/s")
    bench: bool = False
    image: str | None = None
    port: int | str | None = Field(None, description="host port: a number, or \"auto\" (Docker picks one)")
    engine: str = Field("local", description="the Docker Engine it runs on ([engine NAME] in models.conf)")
    gpus: str = Field("all", description='its GPUs: "all", "none" (CPU only) or indices/UUIDs "0,1"')
    exclusive: bool = Field(False, description="runs alone on its engine")
    aliases: list[str] = Field(default_factory=list, description="other names the endpoint accepts for it")
    ttl: float | None = Field(None, description="seconds without a request before it is unloaded; "
                              "null: never")
    preload: bool = Field(False, description="ensured when the daemon starts")


class Spread(Wire):
    median: float
    min: float
    max: float


class Measured(Wire):
    date: float = Field(description="when it was measured (unix time)")
    image: str = Field(description="the llama-server image it ran on")
    runs: int = Field(description="measured runs (after one warm-up)")
    prompt_tokens: int
    gen_tokens: int
    load_seconds: Spread
    prompt_tps: Spread = Field(description="prompt processing, tokens/s (llama-server's timings)")
    gen_tps: Spread = Field(description="generation, tokens/s (llama-server's timings)")
    memory_bytes: int | None = Field(None, description="memory the model used")
    memory_source: str | None = Field(
        None, description="nvml: GPU memory of its processes; container: the container's memory")


Verdict = Literal["fits", "tight", "wont_fit", "unknown"]


class FitDeviceVerdict(Wire):
    device: str = Field(description='"host" or "gpuN"')
    need_bytes: int = Field(description="what the profile needs there (the estimate's total)")
    free_bytes: int | None = Field(None, description="free there for a switch: free now plus what the "
                                   "models it would replace hold; null if unknown")
    verdict: Verdict


class ProfileFit(Wire):
    verdict: Verdict = Field(
        description="fits; tight (within the estimate's error band); wont_fit (switch_model refuses it "
        "unless force=true); unknown (see error)")
    message: str = Field("", description="one line: the deciding device, what it needs, what is free")
    devices: list[FitDeviceVerdict] = Field(default_factory=list)
    error: str | None = Field(None, description="why the verdict is unknown (model file unreadable, ...)")


class ModelEntry(Profile):
    """One profile of list_models: what it is, where it would run, what a switch to it would stop."""

    model_present: bool = Field(True, description="whether the model file exists")
    current: bool = Field(False, description="whether it runs now (same as running != null)")
    default: bool = Field(False, description="models.conf's `default`")
    running: str | None = Field(None, description="its state when it has a container (starting, loading, "
                                "ready, stopping, failed, unreachable); null: not running")
    conflicts_with: list[str] = Field(default_factory=list, description="profiles that cannot run beside "
                                      "it (same engine and a shared GPU, the same fixed port, or exclusive)")
    would_replace: list[str] = Field(default_factory=list, description="the RUNNING models a switch to it "
                                     "would stop; every other running model keeps serving")
    estimated_load_seconds: float | None = Field(
        None, description="median of recent loads; null before the first")
    fit: ProfileFit | None = Field(None, description="pre-flight: does it fit in GPU and host memory, "
                                   "counting what the models it would replace hold as free")
    measured: Measured | None = Field(None, description="the latest `llm-mcp bench` of this profile as "
                                      "configured now (same image and flags); null if none")

    @property
    def is_running(self) -> bool:
        """Whether it has a container now (a single-model daemon says only `current`)."""
        return self.current or self.running in RUNNING_STATES

    @property
    def where(self) -> str:
        """engine/gpus in one word: "local/all", "box/0,1"."""
        return f"{self.engine}/{self.gpus}"


class ModelList(Wire):
    models: list[ModelEntry]
    current: str | None = Field(None, description="the id of a running model (the first; each entry's "
                                "`running` says which run), or null")


# ---- jobs --------------------------------------------------------------------------------


class PhaseMark(Wire):
    phase: str
    at: float = Field(0.0, description="seconds after the job began")
    time: float | None = Field(None, description="unix time")


class Job(Wire):
    id: str = Field(description="job id; status reports on it")
    kind: str = Field("switch", description="switch | stop (every model) | unload (one model) | adopt | "
                      "crash | bench (`llm-mcp bench`: profile is the one being measured)")
    profile: str | None = Field(None, description="target model id")
    name: str = Field("", description="target model's display name")
    engine: str | None = Field(None, description="the engine the target runs on")
    phase: str = Field("queued", description="queued, draining, stopping_previous, starting, loading, "
                       "loading_model, loading_tensors, creating_context, model_loaded, listening, "
                       "restoring_previous, then the result")
    phases: list[PhaseMark] = Field(default_factory=list)
    elapsed: float = Field(0.0, description="seconds since the job began")
    estimate: float | None = Field(None, description="expected load seconds (past loads); null if unknown")
    progress: float | None = Field(None, description="estimated fraction done, 0..1; null if unknown")
    done: bool = False
    result: str | None = Field(None, description="ready | failed | cancelled | stopped (a bench: done | "
                               "failed); null while running")
    reason: str | None = Field(None, description="why it failed: a stable code")
    message: str | None = None
    hint: str | None = Field(None, description="what to do about the failure")
    detail: str = ""
    log_lines: list[str] = Field(default_factory=list, description="last log lines of a failed load")
    stops: list[str] = Field(default_factory=list, description="the running models this job stops (a "
                             "switch: only those that conflict with its target; the others keep serving)")
    previous: str | None = Field(None, description="the model to restore on failure")
    restored: bool | None = Field(None, description="whether the previous model was restored")
    replaced_by: str | None = Field(None, description="the job that cancelled this one")
    load_seconds: float | None = None
    created_at: float | None = Field(None, description="unix time")
    force: bool = False
    rollback: bool = True
    bench: dict[str, Any] | None = Field(None, description="a bench job's profiles, settings, step and "
                                         "results so far (docs/bench.md); null for other jobs")


# ---- status ------------------------------------------------------------------------------


class ContainerSummary(Wire):
    id: str
    name: str = ""
    image: str = ""
    started_at: float | None = Field(None, description="unix time")
    uptime: float | None = Field(None, description="seconds")


class SpeedInfo(Wire):
    measured_tps: float | None = Field(None, description="measured generation speed, tokens/s")
    expected_tps: float | None = Field(None, description="the profile's 'speed'")
    ratio: float | None = None
    as_expected: bool | None = Field(None, description="measured >= 80% of expected")
    source: str | None = Field(None, description="verification (a test completion), log, or bench "
                               "(the stored `llm-mcp bench` result)")
    bench_tps: float | None = Field(None, description="the bench's median generation speed, tokens/s")


class OffloadInfo(Wire):
    layers: int = Field(description="layers llama-server put on the GPU")
    total: int
    expected: GpuLayers = None
    matches: bool | None = None


class HealthDetail(Wire):
    status: str | None = None
    since: float | None = None
    message: str | None = None
    hint: str | None = None


class Requests(Wire):
    in_flight: int = Field(0, description="requests the endpoint is passing to it now")
    queued: int = Field(0, description="requests waiting for it to be ready")


class Ttl(Wire):
    seconds: float = Field(description="the profile's ttl")
    remaining: float | None = Field(None, description="seconds left before it is unloaded if no request "
                                    "comes; null while requests run")


class RunningModel(Wire):
    """One model with a container (or a recent failure)."""

    id: str = Field(description="the model id (profile)")
    name: str = ""
    state: str = Field("stopped", description="starting | loading | ready | stopping | failed | "
                       "unreachable (its engine does not answer) | stopped")
    since: float | None = Field(None, description="unix time of its last state change")
    reason: str | None = None
    reason_code: str | None = None
    hint: str | None = None
    engine: str = "local"
    gpus: str = Field("all", description='"all", "none" or "0,1"')
    exclusive: bool = False
    port: int | None = Field(None, description="the host port it listens on")
    endpoint: str | None = Field(None, description="llama-server's base URL (OpenAI-compatible /v1)")
    container: ContainerSummary | None = None
    health: str | None = Field(None, description="ok | loading | unresponsive (ready but not answering "
                               "/health: paused or hung) | error")
    health_detail: HealthDetail | None = None
    job: Job | None = Field(None, description="the job in flight for this model, if any")
    last_switch: Job | None = Field(None, description="how its last job ended")
    speed: SpeedInfo | None = None
    offload: OffloadInfo | None = None
    stale_config: bool = Field(False, description="models.conf changed since it started")
    memory_bytes: int | None = Field(None, description="memory it holds (GPU memory of its processes, "
                                     "else the container's), when known")
    requests: Requests | None = Field(None, description="the endpoint's requests for it")
    ttl: Ttl | None = Field(None, description="idle unload; null: it stays until unloaded")
    preload: bool = False
    profile: Profile | None = None


class Engine(Wire):
    name: str
    url: str | None = None
    local: bool = True
    available: bool = True
    since: float | None = None
    message: str | None = None
    hint: str | None = None
    gpu_source: str | None = Field(None, description="nvml | config (the GPUs models.conf lists) | null")
    gpu_note: str | None = None


class DockerState(Wire):
    name: str | None = Field(None, description="the engine's name (local)")
    url: str | None = None
    available: bool = Field(True, description="false while the Docker Engine does not answer; the daemon "
                            "reconnects by itself and adopts the running containers again")
    since: float | None = Field(None, description="unix time of the last change")
    message: str | None = None
    hint: str | None = None


class StateDir(Wire):
    path: str = ""
    writable: bool = Field(True, description="false when run logs or load times cannot be saved (full or "
                           "read-only disk); logs are then kept in memory only")
    error: str | None = None


class GpuInfo(Wire):
    index: int
    name: str | None = None
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: int | None = None
    power_w: float | None = None


class GpuSummary(Wire):
    available: bool = False
    reason: str | None = Field(None, description="why no GPU is visible")
    driver_version: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    taken_at: float | None = Field(None, description="unix time of the sample")
    wall: float | None = Field(None, description="unix time the daemon published it")


class ProxyInfo(Wire):
    """The model endpoint ([proxy] listen in models.conf; docs/proxy.md)."""

    address: str | None = Field(None, description="HOST:PORT it listens on; null: not served")
    error: str | None = Field(None, description="why it is not served although models.conf asks for it")
    url: str | None = Field(None, description="base URL for OpenAI clients (http://HOST:PORT/v1); "
                            "Anthropic clients take it without /v1")


class Status(Wire):
    """Every running model, the jobs in flight, the engines; and, for one-model readers, the
    primary model's fields at the top level."""

    instance: str | None = None
    models: list[RunningModel] | None = Field(None, description="every model with a container or a recent "
                                              "failure, oldest start first")
    jobs: list[Job] = Field(default_factory=list, description="the jobs in flight")
    primary: str | None = Field(None, description="the model the top-level fields describe: the target of "
                                "the most recent switch, else the newest running one")
    engines: list[Engine] = Field(default_factory=list)
    docker: DockerState | None = Field(None, description="the local Docker Engine")
    # the primary model, as a single-model daemon reported it
    state: str = Field("stopped", description="stopped | starting | loading | ready | stopping | failed")
    since: float | None = Field(None, description="unix time of the last state change")
    reason: str | None = None
    reason_code: str | None = Field(None, description="machine-readable reason, e.g. docker_unavailable, "
                                    "switch_interrupted")
    hint: str | None = None
    profile: Profile | None = None
    endpoint: str | None = Field(None, description="llama-server's base URL (OpenAI-compatible /v1)")
    container: ContainerSummary | None = None
    health: str | None = Field(None, description="ok | loading | unresponsive | error")
    health_detail: HealthDetail | None = None
    stale_config: bool = Field(False, description="models.conf changed since the model started")
    job: Job | None = Field(None, description="the primary model's job in flight, if any")
    last_switch: Job | None = Field(None, description="how the last job ended")
    speed: SpeedInfo | None = None
    offload: OffloadInfo | None = None
    state_dir: StateDir | None = None
    config_warnings: list[str] = Field(default_factory=list, description="valid but risky models.conf "
                                       "settings (file:line: [section] key: why)")
    gpu: GpuSummary | None = None
    system: dict[str, Any] | None = None
    proxy: ProxyInfo | None = Field(None, description="the OpenAI/Anthropic endpoint: any client names a "
                                    "model there and it is loaded on demand; null: an older daemon")

    def running_models(self) -> list[RunningModel]:
        """`models`, or (a single-model daemon) the one model its top-level fields describe."""
        if self.models is not None:
            return list(self.models)
        if self.profile is None or (self.state == "stopped" and self.container is None):
            return []
        p = self.profile
        fields = ("state", "since", "reason", "reason_code", "hint", "endpoint", "container", "health",
                  "health_detail", "job", "last_switch", "speed", "offload", "stale_config")
        return [RunningModel.model_validate({
            **{name: getattr(self, name) for name in fields}, "id": p.id, "name": p.name, "profile": p,
            "port": p.port if isinstance(p.port, int) else None})]

    def jobs_in_flight(self) -> list[Job]:
        """`jobs`, or (a single-model daemon) its one job."""
        if self.jobs:
            return list(self.jobs)
        return [self.job] if self.job is not None else []


# ---- logs ----------------------------------------------------------------------------------


class LogLine(Wire):
    seq: int = 0
    time: float = Field(0.0, description="unix time")
    run: str = Field("", description="container id; empty for llm-mcp's own notes and separators")
    kind: str = Field("log", description="log | separator | note")
    text: str = ""
    model: str | None = Field(None, description="the model (profile id) whose container printed it; null "
                              "for the daemon's own notes about no model")


class Logs(Wire):
    run: str = "all"
    model: str | None = Field(None, description="the model asked for; null: every model's lines")
    lines: list[LogLine] = Field(default_factory=list)
    truncated: bool = Field(False, description="true when older matching lines were left out to keep "
                            "the reply small; ask for fewer lines")
    omitted: int = Field(0, description="how many matching lines were left out")
