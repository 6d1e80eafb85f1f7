"""GET /metrics of the model endpoint: Prometheus text format, written by hand (no extra package).

Counters and summaries (as _sum/_count pairs) per model, kept by the proxy as requests
pass; in-flight and queued requests read from the scheduler's RequestBook; loads from
the scheduler's job events (every load, whoever asked); GPU memory and utilisation from
the daemon's last GPU sample.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

__all__ = ["Metrics"]

PREFIX = "llm_mcp_"
MAX_SEEN_JOBS = 1000


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)  # (model, route)
        self.errors: defaultdict[tuple[str, str], int] = defaultdict(int)  # (model, reason)
        self.queue_wait: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # sum, count
        self.ttft: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.tokens: defaultdict[str, int] = defaultdict(int)  # generated, from llama-server's timings
        self.gen_seconds: defaultdict[str, float] = defaultdict(float)
        self.last_tps: dict[str, float] = {}
        self.loads: defaultdict[tuple[str, str], int] = defaultdict(int)  # (model, result)
        self.load_seconds: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self._seen_jobs: dict[str, None] = {}

    # ---- what the proxy reports ----------------------------------------------------------

    def request(self, model: str, route: str) -> None:
        self.requests[model, route] += 1

    def error(self, model: str, reason: str) -> None:
        self.errors[model, reason] += 1

    def waited(self, model: str, seconds: float) -> None:
        _observe(self.queue_wait[model], seconds)

    def first_token(self, model: str, seconds: float) -> None:
        _observe(self.ttft[model], seconds)

    def timings(self, model: str, timings: Any) -> None:
        """llama-server's `timings` of one answer: predicted_n tokens in predicted_ms."""
        if not isinstance(timings, dict):
            return
        n, ms = timings.get("predicted_n"), timings.get("predicted_ms")
        if isinstance(n, int | float) and isinstance(ms, int | float) and n > 0 and ms > 0 \
                and math.isfinite(ms):
            self.tokens[model] += int(n)
            self.gen_seconds[model] += ms / 1000
            self.last_tps[model] = n / (ms / 1000)

    def job(self, job: dict[str, Any]) -> None:
        """A scheduler job event: a finished load counts once."""
        if job.get("kind") != "switch" or not job.get("done") or not job.get("profile"):
            return
        job_id = str(job.get("id"))
        if job_id in self._seen_jobs or job.get("result") not in ("ready", "failed"):
            return
        self._seen_jobs[job_id] = None
        if len(self._seen_jobs) > MAX_SEEN_JOBS:
            del self._seen_jobs[next(iter(self._seen_jobs))]
        if job.get("detail") == "already loaded":
            return
        model = str(job["profile"])
        self.loads[model, str(job["result"])] += 1
        seconds = job.get("load_seconds")
        if job["result"] == "ready" and isinstance(seconds, int | float):
            _observe(self.load_seconds[model], float(seconds))

    # ---- the text ---------------------------------------------------------------------------

    def render(self, models: Iterable[str], in_flight: dict[str, int], queued: dict[str, int],
               gpu: dict[str, Any] | None) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str,
                   rows: Iterable[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {PREFIX}{name} {help_text}")
            out.append(f"# TYPE {PREFIX}{name} {kind}")
            for labels, value in rows:
                out.append(f"{PREFIX}{name}{_labels(labels)} {_value(value)}")

        def summary(name: str, help_text: str, table: dict[str, list[float]]) -> None:
            out.append(f"# HELP {PREFIX}{name} {help_text}")
            out.append(f"# TYPE {PREFIX}{name} summary")
            for model, (total, count) in sorted(table.items()):
                out.append(f"{PREFIX}{name}_sum{_labels({'model': model})} {_value(total)}")
                out.append(f"{PREFIX}{name}_count{_labels({'model': model})} {_value(count)}")

        names = sorted(set(models))
        family("requests_total", "counter", "Requests the endpoint answered or refused, per model and route.",
               (({"model": m, "route": r}, v) for (m, r), v in sorted(self.requests.items())))
        family("request_errors_total", "counter", "Requests that ended in an error, per model and reason.",
               (({"model": m, "reason": r}, v) for (m, r), v in sorted(self.errors.items())))
        family("requests_in_flight", "gauge", "Requests being answered by the model's server now.",
               (({"model": m}, in_flight.get(m, 0)) for m in names))
        family("requests_queued", "gauge", "Requests waiting for the model to load.",
               (({"model": m}, queued.get(m, 0)) for m in names))
        summary("queue_wait_seconds", "Time requests waited for their model to load.", self.queue_wait)
        summary("time_to_first_token_seconds", "From the request reaching the model's server to the "
                "first streamed event.", self.ttft)
        family("generated_tokens_total", "counter", "Tokens generated (llama-server's timings).",
               (({"model": m}, v) for m, v in sorted(self.tokens.items())))
        family("generation_seconds_total", "counter", "Seconds spent generating them (rate of the two: "
               "tokens per second).", (({"model": m}, v) for m, v in sorted(self.gen_seconds.items())))
        family("tokens_per_second", "gauge", "Generation speed of the last answer with timings.",
               (({"model": m}, v) for m, v in sorted(self.last_tps.items())))
        family("loads_total", "counter", "Model loads since the daemon started, per result.",
               (({"model": m, "result": r}, v) for (m, r), v in sorted(self.loads.items())))
        summary("load_seconds", "Time successful loads took.", self.load_seconds)
        self._gpu(family, gpu)
        return "\n".join(out) + "\n"

    @staticmethod
    def _gpu(family: Any, gpu: dict[str, Any] | None) -> None:
        gpus = [g for g in (gpu or {}).get("gpus") or () if isinstance(g, dict)]

        def rows(key: str, scale: float) -> list[tuple[dict[str, str], float]]:
            return [({"gpu": str(g.get("index")), "name": str(g.get("name") or "")}, float(g[key]) * scale)
                    for g in gpus if isinstance(g.get(key), int | float)]

        mib = 1024.0 * 1024.0
        family("gpu_memory_used_bytes", "gauge", "GPU memory in use (the daemon's last sample).",
               rows("memory_used_mib", mib))
        family("gpu_memory_total_bytes", "gauge", "GPU memory in all.", rows("memory_total_mib", mib))
        family("gpu_utilization_ratio", "gauge", "GPU utilisation, 0 to 1.", rows("utilization_pct", 0.01))


def _observe(cell: list[float], value: float) -> None:
    cell[0] += value
    cell[1] += 1


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
