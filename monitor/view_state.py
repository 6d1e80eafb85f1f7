"""What the monitor knows about the daemon, built from `status` answers and events.

Plain data and no Textual: the widgets render from it, the app feeds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from llm_mcp.wire import RunningModel

HISTORY_SECONDS = 120  # sparklines cover about two minutes at one sample a second
FINISHED_REMEMBERED = 64  # ids of finished jobs kept, so a late answer cannot bring one back


@dataclass
class GpuHistory:
    util: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    memory: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))


@dataclass
class ViewState:
    clock: Callable[[], float]
    readonly: bool = False
    connected: bool = False
    connection_note: str = "connecting to the daemon…"
    ever_connected: bool = False
    daemon: dict[str, Any] = field(default_factory=dict)  # the `hello` answer
    status: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    gpu: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    job: dict[str, Any] | None = None  # the job in flight
    job_seen_at: float = 0.0
    status_seen_at: float = 0.0  # when `status` was answered: ttl countdowns count from it
    last_job: dict[str, Any] | None = None  # the last finished job
    dismissed: str | None = None  # id of a finished job whose panel was closed
    finished: deque[str] = field(default_factory=lambda: deque(maxlen=FINISHED_REMEMBERED))
    gpu_history: dict[int, GpuHistory] = field(default_factory=dict)
    cpu_history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))

    # ---- reading -----------------------------------------------------------------

    @property
    def state(self) -> str:
        if not self.connected:
            return "unknown"
        return str(self.status.get("state") or "unknown")

    @property
    def profile(self) -> dict[str, Any] | None:
        profile = self.status.get("profile")
        return profile if isinstance(profile, dict) else None

    @property
    def current_id(self) -> str | None:
        profile = self.profile
        return str(profile["id"]) if profile and self.state == "ready" else None

    def uptime(self, row: RunningModel | None = None) -> float | None:
        """The container's uptime: the primary model's, or that of `row` (one of `running`)."""
        if row is not None:
            return self._since(None if row.container is None else row.container.started_at,
                               None if row.container is None else row.container.uptime)
        container = self.status.get("container") or {}
        return self._since(container.get("started_at"), container.get("uptime"))

    def _since(self, started: Any, uptime: Any) -> float | None:
        if isinstance(started, int | float):
            return max(0.0, self.clock() - float(started))
        return float(uptime) if isinstance(uptime, int | float) else None

    # ---- the model endpoint ([proxy]): requests and idle unloads ---------------------

    @property
    def endpoint_url(self) -> str | None:
        """The daemon's OpenAI/Anthropic endpoint when it serves one."""
        proxy = self.status.get("proxy")
        url = proxy.get("url") if isinstance(proxy, dict) else None
        return str(url) if url else None

    @property
    def endpoint_error(self) -> str | None:
        proxy = self.status.get("proxy")
        error = proxy.get("error") if isinstance(proxy, dict) else None
        return str(error) if error else None

    @property
    def wants_polling(self) -> bool:
        """Request counts change without an event: poll status while the endpoint serves or a
        model counts down to an idle unload."""
        return self.connected and (self.endpoint_url is not None
                                   or any(row.ttl is not None for row in self.running))

    def ttl_left(self, row: RunningModel) -> float | None:
        """Seconds before `row` is unloaded for idleness, counted down since the last status;
        None: no ttl, or paused while requests run."""
        if row.ttl is None or row.ttl.remaining is None:
            return None
        return max(0.0, row.ttl.remaining - max(0.0, self.clock() - self.status_seen_at))

    # ---- several models ----------------------------------------------------------

    @property
    def several(self) -> bool:
        """The daemon reports a list of models (one that runs several at once)."""
        return isinstance(self.status.get("models"), list)

    @property
    def running(self) -> list[RunningModel]:
        """One row per model with a container or a recent failure, oldest start first.

        An older daemon reports one model in the top-level fields: its row is made from them.
        """
        if not self.connected:
            return []
        rows = self.status.get("models")
        if isinstance(rows, list):
            return [_running_model(row) for row in rows
                    if isinstance(row, dict) and row.get("id") is not None]
        profile = self.profile
        if profile is None or profile.get("id") is None or self.state in ("stopped", "unknown"):
            return []
        keys = ("state", "since", "reason", "reason_code", "hint", "endpoint", "container", "health",
                "health_detail", "speed", "offload", "stale_config", "requests", "ttl", "preload")
        fields = {key: self.status[key] for key in keys if self.status.get(key) is not None}
        return [_running_model({**fields, "id": profile.get("id"), "name": profile.get("name") or "",
                                "profile": profile})]

    @property
    def primary_id(self) -> str | None:
        """The model the single-model fields describe (status.primary; else the profile's id)."""
        primary = self.status.get("primary")
        if primary is not None:
            return str(primary)
        profile = self.profile
        return str(profile["id"]) if profile and profile.get("id") is not None else None

    def running_ids(self) -> list[str]:
        return [row.id for row in self.running]

    def serving_ids(self) -> list[str]:
        """The models with a container (a failed or stopped row has none)."""
        return [row.id for row in self.running if row.state not in ("failed", "stopped")]

    def job_elapsed(self) -> float:
        job = self.job or {}
        elapsed = float(job.get("elapsed") or 0.0)
        return elapsed + max(0.0, self.clock() - self.job_seen_at)

    def failed_job(self) -> dict[str, Any] | None:
        """The last switch when it failed and nobody closed its panel yet."""
        job = self.last_job
        if self.job is None and job and job.get("result") == "failed" and job.get("id") != self.dismissed:
            return job
        return None

    def profiles(self, bench: bool) -> list[dict[str, Any]]:
        return [m for m in self.models if bool(m.get("bench")) == bench]

    @property
    def default_id(self) -> str | None:
        """The profile models.conf names as `default`, when list_models says which."""
        for m in self.models:
            if m.get("default"):
                return str(m.get("id"))
        return None

    def profile_name(self, profile_id: str | None) -> str:
        for m in self.models:
            if m.get("id") == profile_id:
                return str(m.get("name") or profile_id)
        return str(profile_id or "?")

    # ---- feeding -----------------------------------------------------------------

    def apply_status(self, status: dict[str, Any]) -> None:
        self.status = status
        self.status_seen_at = self.clock()
        if isinstance(status.get("gpu"), dict):
            self.gpu = status["gpu"]
        job = self._job_in(status)
        # An answer that left the daemon before a job's last event can still say "in flight"
        # (and name the switch before it as the last one): the events know better.
        stale = isinstance(job, dict) and self._is_finished(job)
        self.job = job if isinstance(job, dict) and not stale else None
        self.job_seen_at = self.clock()
        last = status.get("last_switch")
        if isinstance(last, dict) and not stale:
            self.last_job = last

    def _job_in(self, status: dict[str, Any]) -> Any:
        """The job the panel follows: the one it shows if still in flight, else the primary model's,
        else any (a daemon with several models lists them all in `jobs`)."""
        jobs = [j for j in status.get("jobs") or [] if isinstance(j, dict)]
        shown = (self.job or {}).get("id")
        same = next((j for j in jobs if shown is not None and j.get("id") == shown), None)
        return same or status.get("job") or (jobs[0] if jobs else None)

    def apply_state(self, data: dict[str, Any]) -> None:
        """A state event: its model's row changes; the top-level fields only for the primary model."""
        model = data.get("model", data.get("profile"))
        for row in self.status.get("models") or []:
            if isinstance(row, dict) and model is not None and row.get("id") == model:
                _apply_state_to(row, data)
        primary = self.primary_id
        if not self.several or model is None or primary is None or model == primary:
            _apply_state_to(self.status, data)

    def _is_finished(self, job: dict[str, Any]) -> bool:
        return job.get("id") is not None and job.get("id") in self.finished

    def apply_job(self, data: dict[str, Any]) -> bool:
        """Returns True when the job just finished.

        Whatever the order the answers and events arrive in (the reply to `switch`
        can come after the job's own "done" event), a finished job never comes back.
        """
        if data.get("done"):
            if data.get("id") is not None and data.get("id") not in self.finished:
                self.finished.append(str(data["id"]))
            if self.job is None or self.job.get("id") == data.get("id"):
                self.job = None
            if data.get("kind") != "adopt" or data.get("result") != "cancelled":
                self.last_job = data
            return True
        if self._is_finished(data):
            return False
        self.job = data
        self.job_seen_at = self.clock()
        return False

    def apply_gpu(self, data: dict[str, Any]) -> None:
        self.gpu = data
        seen = set()
        for gpu in data.get("gpus") or []:
            index = int(gpu.get("index", 0))
            seen.add(index)
            history = self.gpu_history.setdefault(index, GpuHistory())
            history.util.append(gpu.get("utilization_pct"))
            history.memory.append(gpu.get("memory_used_mib"))
        for index in list(self.gpu_history):
            if index not in seen:
                del self.gpu_history[index]

    def apply_system(self, data: dict[str, Any]) -> None:
        self.system = data
        self.cpu_history.append(data.get("cpu_pct"))


def _running_model(row: dict[str, Any]) -> RunningModel:
    """The row as the wire type; a row with a field that makes no sense keeps what does (never an error)."""
    try:
        return RunningModel.model_validate(row)
    except ValidationError as exc:  # leave out the fields that do not make sense, keep the rest
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    try:
        return RunningModel.model_validate({k: v for k, v in row.items() if k not in bad or k == "id"})
    except ValidationError:
        return RunningModel.model_validate({"id": str(row.get("id"))})


def _apply_state_to(target: dict[str, Any], data: dict[str, Any]) -> None:
    for key in ("state", "reason", "hint"):
        if key in data:
            target[key] = data[key]
    if data.get("speed") is not None:
        speed = dict(target.get("speed") or {})
        speed["measured_tps"] = data["speed"]
        expected = speed.get("expected_tps")
        if expected:
            speed["ratio"] = round(float(data["speed"]) / float(expected), 3)
        target["speed"] = speed
