"""The settings that fit the free memory, found by bisection over the estimator.

Each knob moves memory one way: more GPU layers, fewer expert layers on the CPU, or a
lower expert-block cutoff put more on the GPUs; a larger context grows the KV cache and
the compute buffer everywhere. So "fits" is monotone in each knob and a bisection finds
the edge in a handful of estimates. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llm_mcp.hardware.fit_estimate import Estimate, estimate, matching_tensors, verdict
from llm_mcp.hardware.fit_settings import EXPERT_REGEX, FitSettings, Override, compile_override
from llm_mcp.hardware.gguf_info import ModelInfo

__all__ = ["Suggestions", "expert_cutoff_pattern", "suggest"]

# "fits with a lot to spare": more than this share of a GPU's free memory left over.
SPARE_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Suggestions:
    n_gpu_layers: int | None  # largest that fits; None when no GPU or nothing fits
    n_cpu_moe: int | None  # smallest --n-cpu-moe that fits (MoE models only)
    expert_cutoff: int | None  # largest K: experts of blocks >= K on the CPU (MoE only)
    expert_cutoff_override: str | None  # the -ot value for that cutoff
    ctx_size: int | None  # largest that fits with the other settings as given

    def to_dict(self) -> dict[str, object]:
        return {
            "n_gpu_layers": self.n_gpu_layers, "n_cpu_moe": self.n_cpu_moe,
            "expert_cutoff": self.expert_cutoff, "expert_cutoff_override": self.expert_cutoff_override,
            "ctx_size": self.ctx_size,
        }  # fmt: skip


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest x in [lo, hi] with ok(x), for ok true on a prefix; None if ok(lo) is false."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _without_expert_overrides(s: FitSettings, info: ModelInfo) -> FitSettings:
    """Drop the overrides that only move expert tensors to the CPU: the knob being searched."""

    def expert_only(o: Override) -> bool:
        if o.device != "host":
            return False
        names = matching_tensors(o.pattern, info.tensor_names)
        hit = [t.is_expert for t in info.tensors if t.name in names]
        return bool(hit) and all(hit)

    return s.with_(overrides=tuple(o for o in s.overrides if not expert_only(o)))


def with_n_cpu_moe(s: FitSettings, n: int, info: ModelInfo) -> FitSettings:
    base = _without_expert_overrides(s, info)
    extra = tuple(compile_override(f"blk\\.{i}{EXPERT_REGEX}", "CPU") for i in range(n))
    return base.with_(overrides=base.overrides + extra)


def expert_cutoff_pattern(cutoff: int, n_layer: int) -> str:
    """``-ot`` value putting the expert tensors of blocks ``cutoff``..n_layer-1 on the CPU."""
    blocks = "|".join(str(i) for i in range(cutoff, n_layer))
    return f"blk\\.({blocks})\\.ffn_(up|down|gate)_exps=CPU"


def with_expert_cutoff(s: FitSettings, cutoff: int, info: ModelInfo) -> FitSettings:
    base = _without_expert_overrides(s, info)
    if cutoff >= info.n_layer:
        return base
    pattern = expert_cutoff_pattern(cutoff, info.n_layer).rpartition("=")[0]
    return base.with_(overrides=(*base.overrides, compile_override(pattern, "CPU")))


def fits(est: Estimate, free: Mapping[str, int], devices: Callable[[str], bool] = lambda d: True) -> bool:
    """True when every device (selected by ``devices``) with a free figure has room beyond the band."""
    v = verdict(est, {k: n for k, n in free.items() if devices(k)})
    return v.fit == "fits"


def _gpu_only(dev: str) -> bool:
    return dev != "host"


def suggest(info: ModelInfo, settings: FitSettings, free: Mapping[str, int], *, n_gpus: int) -> Suggestions:
    """The edge of each knob for ``free`` (bytes per device: "host", "gpu0", ...)."""

    def gpu_ok(s: FitSettings) -> bool:
        return fits(estimate(info, s, n_gpus=n_gpus), free, _gpu_only)

    has_gpu = n_gpus > 0 and not settings.no_gpu and any(k != "host" for k in free)
    ngl = None
    n_cpu_moe = cutoff = None
    cutoff_ot = None
    if has_gpu:
        ngl = _largest(0, info.n_layer + 1, lambda n: gpu_ok(settings.with_(n_gpu_layers=n)))
        if info.n_expert:
            # Prepare the base once: the override scan is the costly part of an estimate.
            base = _without_expert_overrides(settings, info)
            # Smallest N (with N layers' experts on the CPU) == largest n_layer - N.
            k = _largest(0, info.n_layer, lambda m: gpu_ok(with_n_cpu_moe(base, info.n_layer - m, info)))
            n_cpu_moe = None if k is None else info.n_layer - k
            cutoff = _largest(0, info.n_layer, lambda c: gpu_ok(with_expert_cutoff(base, c, info)))
            if cutoff is not None and cutoff < info.n_layer:
                cutoff_ot = expert_cutoff_pattern(cutoff, info.n_layer)
    top = max(info.n_ctx_train, settings.ctx_size, 256) // 256
    steps = _largest(
        1, top, lambda c: fits(estimate(info, settings.with_(ctx_size=c * 256), n_gpus=n_gpus), free)
    )
    return Suggestions(ngl, n_cpu_moe, cutoff, cutoff_ot, None if steps is None else steps * 256)


def needs_suggestions(est: Estimate, free: Mapping[str, int]) -> bool:
    """Not fitting, or fitting with more than a quarter of some GPU's free memory to spare."""
    v = verdict(est, free)
    if v.fit != "fits":
        return True
    return any(
        dev != "host" and free[dev] > 0 and room > SPARE_SHARE * free[dev] for dev, room in v.headroom.items()
    )
