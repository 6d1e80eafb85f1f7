"""`llm-mcp fit` and the `fit_model` MCP tool: estimate, verdict and suggestions for a profile.

The only I/O here is reading the model's header; where the free memory comes from is the
caller's business (NVML in the CLI, the daemon's GPU samples in the MCP server, a number
the user states), so this module imports neither NVML nor Docker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm_mcp.config.models_conf import Profile
from llm_mcp.hardware.fit_estimate import Estimate, Verdict, estimate, verdict
from llm_mcp.hardware.fit_settings import FitSettings, SettingsError, settings_from_args
from llm_mcp.hardware.fit_suggest import Suggestions, needs_suggestions, suggest
from llm_mcp.hardware.gguf_info import GGUFError, ModelInfo, read_model_info_cached

__all__ = ["FitReport", "fit_profile", "free_from_gpu_samples", "parse_bytes", "render"]

MiB = 1 << 20
GiB = 1 << 30
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2, "mib": MiB,
          "g": 1000**3, "gb": 1000**3, "gib": GiB, "t": 1000**4, "tb": 1000**4, "tib": 1 << 40}  # fmt: skip


def parse_bytes(text: str) -> int:
    """'24GiB', '24 GB', '512MiB', '25769803776' -> bytes; ValueError with an example otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"'{text}' is not a size (e.g. 24GiB, 512MiB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[unit])


def free_from_gpu_samples(gpus: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Free bytes per GPU from NVML samples (GpuSample.to_dict()), counting the memory our own
    model holds as free: the profile being checked would replace it."""
    free: dict[str, int] = {}
    for g in gpus:
        total, used = g.get("memory_total_mib"), g.get("memory_used_mib")
        if total is None or used is None:
            continue
        ours = sum(p.get("used_mib") or 0 for p in g.get("processes", ()) if p.get("ours"))
        free[f"gpu{g.get('index', len(free))}"] = int((total - used + ours) * MiB)
    return free


@dataclass(frozen=True, slots=True)
class FitReport:
    profile: str
    model_path: str
    model: ModelInfo
    settings: FitSettings
    estimate: Estimate
    verdict: Verdict
    free: Mapping[str, int]
    suggestions: Suggestions | None

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "profile": self.profile,
            "model": {"path": self.model_path, "architecture": m.architecture, "n_layer": m.n_layer,
                      "n_expert": m.n_expert, "n_expert_used": m.n_expert_used, "file_size": m.file_size,
                      "weight_bytes": m.weight_bytes, "expert_bytes": m.expert_bytes},
            "estimate": self.estimate.to_dict(),
            "free": dict(self.free),
            "verdict": self.verdict.to_dict(),
            "suggestions": self.suggestions.to_dict() if self.suggestions else None,
        }  # fmt: skip


class FitError(Exception):
    """The profile cannot be estimated: bad model file or bad flags; the message says why."""


def fit_profile(
    profile: Profile,
    free: Mapping[str, int],
    *,
    n_gpus: int | None = None,
    suggestions: Literal["auto", "always", "never"] = "auto",
) -> FitReport:
    """Estimate ``profile`` against ``free`` (bytes per device: "host", "gpu0", ...).

    ``n_gpus`` defaults to the number of GPUs in ``free``. Suggestions (a few dozen more
    estimates) come when it does not fit or leaves much of a GPU unused ("auto").
    """
    try:
        info = read_model_info_cached(profile.model_path())
    except GGUFError as exc:
        raise FitError(f"cannot read the model of '{profile.id}': {exc}") from None
    try:
        settings = settings_from_args(profile.server_args())
    except SettingsError as exc:
        raise FitError(f"profile '{profile.id}': {exc}") from None
    gpus = sum(1 for k in free if k != "host") if n_gpus is None else n_gpus
    try:
        est = estimate(info, settings, n_gpus=gpus)
        v = verdict(est, free)
        wanted = suggestions == "always" or (suggestions == "auto" and needs_suggestions(est, free))
        hints = suggest(info, settings, free, n_gpus=gpus) if wanted else None
    except SettingsError as exc:  # an override pattern that runs too long
        raise FitError(f"profile '{profile.id}': {exc}") from None
    return FitReport(profile.id, str(profile.model_path()), info, settings, est, v, free, hints)


def _mib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def render(report: FitReport) -> str:
    """The report as the CLI prints it."""
    m = report.model
    lines = [
        f"{report.profile}: {m.architecture}, {m.n_layer} layers"
        + (f", {m.n_expert} experts ({m.n_expert_used} used)" if m.n_expert else "")
        + f", weights {_mib(m.weight_bytes)}, KV cells {report.estimate.n_ctx}",
        f"{'device':<7} {'weights':>11} {'KV':>11} {'compute':>11} {'overhead':>11} {'total':>11} "
        f"{'free':>11}  verdict",
    ]
    for d in report.estimate.devices:
        free = report.free.get(d.device)
        fit = report.verdict.per_device.get(d.device, "-")
        lines.append(
            f"{d.device:<7} {_mib(d.weights):>11} {_mib(d.kv):>11} {_mib(d.compute):>11} "
            f"{_mib(d.overhead):>11} "
            f"{_mib(d.total):>11} {(_mib(free) if free is not None else 'unknown'):>11}  {fit}"
            f"  (±{_mib(d.band)})"
        )
    lines.append(f"verdict: {report.verdict.fit}")
    s = report.suggestions
    if s is not None and all(v is None for v in (s.n_gpu_layers, s.n_cpu_moe, s.expert_cutoff, s.ctx_size)):
        lines.append("what fits (by the estimate): nothing, even the smallest setting is too big")
    elif s is not None:
        lines.append("what fits (by the estimate):")
        if s.n_gpu_layers is not None:
            lines.append(f"  n_gpu_layers = {s.n_gpu_layers}  (largest)")
        if s.n_cpu_moe is not None:
            lines.append(f"  flags: --n-cpu-moe {s.n_cpu_moe}  (smallest)")
        if s.expert_cutoff_override is not None:
            lines.append(
                f"  override_tensor = {s.expert_cutoff_override}  (experts of blocks >= "
                f"{s.expert_cutoff} on the CPU: the largest cutoff)"
            )
        if s.ctx_size is not None:
            lines.append(f"  ctx_size = {s.ctx_size}  (largest, other settings as they are)")
        else:
            lines.append("  ctx_size: none fits with the other settings as they are")
    for note in report.estimate.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
