"""How much memory a profile needs on each device, from the GGUF header and the flags.

Pure: ``estimate(model_info, settings, n_gpus=...) -> Estimate`` and
``verdict(estimate, free) -> Verdict``. No file, Docker or NVML access here, so the
switch's pre-flight, the ``fit`` command, the MCP tool and the tests all call the same
arithmetic. The formulas and their error bands are in docs/fit.md.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import regex

from llm_mcp.hardware.fit_settings import FitSettings, SettingsError
from llm_mcp.hardware.gguf_info import ModelInfo, TensorInfo

__all__ = [
    "GPU_OVERHEAD_BYTES",
    "HOST_OVERHEAD_BYTES",
    "DeviceEstimate",
    "Estimate",
    "Verdict",
    "estimate",
    "verdict",
]

MiB = 1 << 20
# The CUDA runtime's own share per GPU (context, cuBLAS workspace, kernels): 300-600 MiB
# on current drivers; a constant, with its own band below.
GPU_OVERHEAD_BYTES = 512 * MiB
# llama-server's own heap on the host beyond its buffers (binary, tokenizer, slots).
HOST_OVERHEAD_BYTES = 64 * MiB

# Relative error of each part, checked against llama-server's own numbers (docs/fit.md).
WEIGHTS_BAND = 0.02
KV_BAND = 0.02
COMPUTE_BAND = 0.35
OVERHEAD_BAND = 0.5

_TENSOR_ALIGN = 32  # ggml pads every tensor in a buffer to this
# Tensors before the first repeating layer; llama.cpp always keeps them on the CPU.
_INPUT_PREFIXES = ("token_embd.", "token_types.", "pos_embd.", "token_embd_norm.", "per_layer_token_embd.")


@dataclass(frozen=True, slots=True)
class DeviceEstimate:
    device: str  # "host", "gpu0", "gpu1", ...
    weights: int
    kv: int
    compute: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.overhead

    @property
    def band(self) -> int:
        """The estimate's own error in bytes (either way)."""
        return int(
            self.weights * WEIGHTS_BAND + self.kv * KV_BAND + self.compute * COMPUTE_BAND
            + self.overhead * OVERHEAD_BAND
        )  # fmt: skip

    def to_dict(self) -> dict[str, int | str]:
        return {
            "device": self.device, "weights": self.weights, "kv": self.kv, "compute": self.compute,
            "overhead": self.overhead, "total": self.total, "band": self.band,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Estimate:
    devices: tuple[DeviceEstimate, ...]  # host first, then the GPUs in order
    n_ctx: int  # KV cells after llama.cpp's padding
    gpu_layers: int  # repeating layers (plus output) placed on GPUs
    notes: tuple[str, ...] = ()
    placement: Mapping[str, str] = field(default_factory=dict, repr=False)  # tensor -> device

    def device(self, name: str) -> DeviceEstimate:
        for d in self.devices:
            if d.device == name:
                return d
        return DeviceEstimate(name, 0, 0, 0, 0)

    @property
    def host(self) -> DeviceEstimate:
        return self.devices[0]

    @property
    def gpus(self) -> tuple[DeviceEstimate, ...]:
        return self.devices[1:]

    def to_dict(self) -> dict[str, object]:
        return {
            "n_ctx": self.n_ctx, "gpu_layers": self.gpu_layers, "notes": list(self.notes),
            "devices": [d.to_dict() for d in self.devices],
        }  # fmt: skip


Fit = Literal["fits", "tight", "wont_fit"]


@dataclass(frozen=True, slots=True)
class Verdict:
    fit: Fit  # the worst device's
    per_device: Mapping[str, Fit]
    headroom: Mapping[str, int]  # free minus total, per device that has a free figure

    def to_dict(self) -> dict[str, object]:
        return {"fit": self.fit, "per_device": dict(self.per_device), "headroom": dict(self.headroom)}


_QUANT_SIZES: dict[str, tuple[int, int]] = {}


def _quant_sizes() -> Mapping[str, tuple[int, int]]:
    if not _QUANT_SIZES:
        from gguf import GGML_QUANT_SIZES

        _QUANT_SIZES.update({t.name: v for t, v in GGML_QUANT_SIZES.items()})
    return _QUANT_SIZES


def _row_bytes(type_name: str, n: int) -> int:
    block, size = _quant_sizes()[type_name]
    return -(-n // block) * size


def _pad(n: int, to: int = _TENSOR_ALIGN) -> int:
    return -(-n // to) * to


def _pad256(n: int) -> int:
    return -(-n // 256) * 256


def _layer_devices(info: ModelInfo, s: FitSettings, n_gpus: int) -> tuple[list[str], int]:
    """Device of each repeating layer and of the output layer (index n_layer).

    src/llama-model.cpp load_tensors: the last ``n_gpu_layers`` of the n_layer + 1 layers
    (the output layer counts as one) go to the GPUs, split by ``--tensor-split``
    proportions (by free memory when unset: equal here); the input layer stays on the CPU.
    """
    n_all = info.n_layer + 1
    ngl = n_all if s.n_gpu_layers is None else s.n_gpu_layers
    if n_gpus <= 0 or s.no_gpu:
        return ["host"] * n_all, 0
    start = max(n_all - ngl, 0)
    active = min(ngl, n_all)
    weights = list(s.tensor_split[:n_gpus]) + [0.0] * max(0, n_gpus - len(s.tensor_split))
    if not any(weights):
        weights = [1.0] * n_gpus
    total = sum(weights)
    cuts: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        cuts.append(acc / total)
    out = []
    for il in range(n_all):
        if il < start or il - start >= active:
            out.append("host")
        else:
            g = min(bisect.bisect_right(cuts, (il - start) / active), n_gpus - 1)
            out.append(f"gpu{g}")
    return out, active


# A models.conf pattern gets this long over all of a model's tensor names; a pathological
# one fails with a clear error instead of hanging `fit`, `check` or a switch.
REGEX_BUDGET_S = 0.5


@functools.lru_cache(maxsize=4096)
def matching_tensors(pattern: str, names: tuple[str, ...]) -> frozenset[str]:
    """The tensor names ``pattern`` finds (a search, as std::regex_search); cached because
    a bisection estimates the same model with the same overrides dozens of times."""
    rx = regex.compile(pattern, regex.VERSION0)
    deadline = time.monotonic() + REGEX_BUDGET_S
    found = []
    try:
        for n in names:
            if rx.search(n, timeout=max(deadline - time.monotonic(), 0.001)):
                found.append(n)
    except TimeoutError:
        raise SettingsError(
            f"override '{pattern}' takes over {REGEX_BUDGET_S}s on {len(names)} tensor names; simplify it"
        ) from None
    return frozenset(found)


def _overridden(info: ModelInfo, s: FitSettings, n_gpus: int) -> dict[str, str]:
    """Tensor -> device for the tensors an override catches; the first match wins
    (llama-model-loader.cpp), so later overrides are applied first and overwritten."""
    out: dict[str, str] = {}
    names = info.tensor_names
    for o in reversed(s.overrides):
        dev = "host" if o.device == "host" or n_gpus <= 0 or s.no_gpu else o.device
        for name in matching_tensors(o.pattern, names):
            out[name] = dev
    return out


def _tensor_device(t: TensorInfo, layers: list[str], n_layer: int) -> str:
    if t.block is not None:
        return layers[t.block] if t.block < len(layers) - 1 else "host"
    if t.name.startswith(_INPUT_PREFIXES):
        return "host"
    return layers[n_layer]


def _kv_cells(info: ModelInfo, s: FitSettings) -> tuple[int, int]:
    """(cells of a full-attention layer, cells of a sliding-window layer), all streams."""
    n_ctx = _pad256(s.ctx_size or info.n_ctx_train or 4096)
    n_seq = max(1, s.n_parallel)
    if s.kv_unified:
        per_stream, streams = n_ctx, 1
    else:
        per_stream, streams = _pad256(n_ctx // n_seq), n_seq
    n_ubatch = min(s.ubatch_size, s.batch_size)
    swa = per_stream
    if info.sliding_window and not s.swa_full:
        swa = _pad256(min(per_stream, info.sliding_window * (n_seq if s.kv_unified else 1) + n_ubatch))
    return per_stream * streams, swa * streams


def _compute_bytes(info: ModelInfo, s: FitSettings, n_ctx: int) -> int:
    """Peak of the scheduler's compute buffer for one worst-case ubatch.

    Fitted to llama-server's own `compute buffer size` on six shapes (docs/fit.md): per
    token about 5 x n_embd f32 values of activations (residual, norm, q/k/v) and 3 x the
    FFN width (gate, up, their product; for MoE the used experts' width), plus the
    attention's n_kv x tokens matrix: the f16 mask with flash attention, the f32 KQ
    scores per head without it (each stream of a per-slot cache sees its own cells).
    """
    n_tok = min(s.ubatch_size, s.batch_size, n_ctx)
    n_kv = n_ctx if s.kv_unified else n_ctx // max(1, s.n_parallel)
    n_head = max(info.n_head, default=0)
    n_embd_q = n_head * info.head_dim_k
    ff = max(info.n_ff, info.n_expert_used * (info.n_ff_expert or info.n_ff))
    flash = s.flash_attn.lower() not in ("off", "0", "false", "disabled")
    per_tok = 4 * (2 * info.n_embd + 3 * max(n_embd_q, info.n_embd) + 3 * ff)
    attn = n_kv * n_tok * 2 if flash else n_kv * n_tok * n_head * 4
    logits = info.n_vocab * max(1, s.n_parallel) * 4
    router = info.n_expert * n_tok * 4 * 2
    return _pad(per_tok * n_tok + attn + logits + router, MiB // 16)


def estimate(info: ModelInfo, settings: FitSettings, *, n_gpus: int = 0) -> Estimate:
    """Bytes per device for ``settings`` on the model ``info``: weights, KV cache, compute, overhead."""
    layers, gpu_layers = _layer_devices(info, settings, n_gpus)
    weights: dict[str, int] = {"host": 0}
    placement: dict[str, str] = {}
    has_output = "output.weight" in info.tensor_names
    overridden = _overridden(info, settings, n_gpus)
    for t in info.tensors:
        dev = overridden.get(t.name) or _tensor_device(t, layers, info.n_layer)
        placement[t.name] = dev
        weights[dev] = weights.get(dev, 0) + _pad(t.n_bytes)
        if not has_output and t.name == "token_embd.weight" and layers[info.n_layer] != "host":
            # Tied embeddings: llama.cpp loads token_embd a second time as the output layer.
            out_dev = layers[info.n_layer]
            weights[out_dev] = weights.get(out_dev, 0) + _pad(t.n_bytes)

    full_cells, swa_cells = _kv_cells(info, settings)
    kv: dict[str, int] = {}
    for il in range(info.n_layer):
        k_width, v_width = info.kv_width(il)
        if not k_width:
            continue
        cells = swa_cells if info.swa_layers[il] else full_cells
        dev = layers[il] if settings.kv_offload else "host"
        size = (
            _row_bytes(settings.cache_type_k, k_width) * cells
            + _row_bytes(settings.cache_type_v, v_width) * cells
        )
        kv[dev] = kv.get(dev, 0) + size

    compute_full = _compute_bytes(info, settings, full_cells)
    gpus = [f"gpu{i}" for i in range(n_gpus)] if not settings.no_gpu else []
    devices: list[DeviceEstimate] = []
    for dev in ["host", *gpus]:
        holds_layers = any(d == dev for d in layers[: info.n_layer]) or weights.get(dev, 0) > 0
        if dev == "host":
            # With everything offloaded the host still runs the input layer and copies.
            compute = (
                compute_full
                if any(d == "host" for d in layers[: info.n_layer]) or not gpus
                else (_pad(info.n_embd * min(settings.ubatch_size, settings.batch_size) * 4 * 2, MiB // 16))
            )
            overhead = HOST_OVERHEAD_BYTES
        else:
            compute = compute_full if holds_layers else 0
            overhead = GPU_OVERHEAD_BYTES
        devices.append(DeviceEstimate(dev, weights.get(dev, 0), kv.get(dev, 0), compute, overhead))

    notes: list[str] = []
    if any(w and not k for w, k in ((info.n_head_kv[i], info.kv_width(i)[0]) for i in range(info.n_layer))):
        notes.append("some layers have no attention KV (recurrent/hybrid): their state is not estimated")
    if info.n_expert and not info.n_expert_used:
        notes.append("expert_used_count missing: compute buffer assumes dense FFN")
    return Estimate(tuple(devices), full_cells, gpu_layers, tuple(notes), placement)


def verdict(est: Estimate, free: Mapping[str, int]) -> Verdict:
    """``fits`` when free memory covers total + band on every device with a figure in ``free``,
    ``tight`` when it is within the band, ``wont_fit`` otherwise."""
    order: dict[Fit, int] = {"fits": 0, "tight": 1, "wont_fit": 2}
    per: dict[str, Fit] = {}
    head: dict[str, int] = {}
    for d in est.devices:
        if d.device not in free:
            continue
        room = free[d.device] - d.total
        head[d.device] = room
        per[d.device] = "fits" if room >= d.band else "tight" if room >= -d.band else "wont_fit"
    worst: Fit = max(per.values(), key=order.__getitem__, default="fits")
    return Verdict(worst, per, head)
