"""The memory-relevant part of a llama-server command line, with this build's defaults.

Pure: argv in, :class:`FitSettings` out. Read from the same argv the profile launches
with (``Profile.server_args()``), so ``-ot`` and ``--n-cpu-moe`` keep llama.cpp's
order: every one of them appends to one list of overrides, and the first match wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import regex

__all__ = [
    "DENSE_FFN_REGEX",
    "EXPERT_REGEX",
    "FitSettings",
    "Override",
    "SettingsError",
    "settings_from_args",
]

# common/common.h: LLM_FFN_EXPS_REGEX and LLM_FFN_DENSE_REGEX (what --cpu-moe, --n-cpu-moe
# and --n-cpu-ffn expand to, prefixed by "blk\.N" for the per-layer forms).
EXPERT_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
DENSE_FFN_REGEX = r"\.ffn_(up|down|gate)\."


class SettingsError(ValueError):
    """A flag value llama-server would reject too (bad number, bad override)."""


@dataclass(frozen=True, slots=True)
class Override:
    """One ``REGEX=BUFFER`` pair; ``device`` is "host" or "gpuN"."""

    pattern: str
    buffer: str
    device: str
    regex: regex.Pattern[str]


@dataclass(frozen=True, slots=True)
class FitSettings:
    ctx_size: int = 0  # 0: the model's training context
    n_gpu_layers: int | None = None  # None: llama-server's default (auto: all that fit)
    overrides: tuple[Override, ...] = ()
    tensor_split: tuple[float, ...] = ()
    n_parallel: int = 4  # the server's default ("auto"): 4 slots, unified cache
    kv_unified: bool = True
    cache_type_k: str = "F16"
    cache_type_v: str = "F16"
    batch_size: int = 2048
    ubatch_size: int = 512
    flash_attn: str = "auto"
    kv_offload: bool = True
    swa_full: bool = False
    no_gpu: bool = False  # --device none

    def with_(self, **changes: object) -> FitSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _device_of(buffer: str) -> str:
    """llama.cpp buffer type name -> our device key ("CPU" -> host, "CUDA1" -> gpu1)."""
    if buffer.upper().startswith("CPU"):
        return "host"
    m = re.search(r"(\d+)$", buffer)
    return f"gpu{int(m.group(1)) if m else 0}"


def compile_override(pattern: str, buffer: str) -> Override:
    # The regex package (VERSION0: re's grammar) is close to std::regex's ECMAScript for
    # the patterns people write (classes, alternation, \d, \.), and searches with a
    # timeout (see fit_estimate.matching_tensors).
    try:
        rx = regex.compile(pattern, regex.VERSION0)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise SettingsError(f"override '{pattern}' is not a valid regular expression: {exc}") from None
    return Override(pattern, buffer, _device_of(buffer), rx)


def parse_overrides(value: str) -> list[Override]:
    """``-ot`` value: comma-separated ``REGEX=BUFFER`` (llama.cpp splits on ',' and the first '=')."""
    out = []
    for part in value.split(","):
        pattern, sep, buffer = part.partition("=")
        if not sep or not buffer:
            raise SettingsError(f"override '{part}' is not REGEX=BUFFER")
        out.append(compile_override(pattern, buffer))
    return out


def _per_layer(n: int, ffn_regex: str) -> list[Override]:
    return [compile_override(f"blk\\.{i}{ffn_regex}", "CPU") for i in range(n)]


_TYPES = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}

# flag -> (takes a value, handler key); long and short spellings of this build.
_ALIASES = {
    "-c": "ctx", "--ctx-size": "ctx", "-ngl": "ngl", "--gpu-layers": "ngl", "--n-gpu-layers": "ngl",
    "-ot": "ot", "--override-tensor": "ot", "-cmoe": "cpumoe", "--cpu-moe": "cpumoe",
    "-ncmoe": "ncmoe", "--n-cpu-moe": "ncmoe", "-ncffn": "ncffn", "--n-cpu-ffn": "ncffn",
    "-ts": "ts", "--tensor-split": "ts", "-np": "np", "--parallel": "np",
    "-kvu": "kvu", "--kv-unified": "kvu", "-no-kvu": "nokvu", "--no-kv-unified": "nokvu",
    "-ctk": "ctk", "--cache-type-k": "ctk", "-ctv": "ctv", "--cache-type-v": "ctv",
    "-b": "b", "--batch-size": "b", "-ub": "ub", "--ubatch-size": "ub", "-fa": "fa", "--flash-attn": "fa",
    "-nkvo": "nkvo", "--no-kv-offload": "nkvo", "--swa-full": "swafull", "-dev": "dev", "--device": "dev",
}  # fmt: skip
_NO_VALUE = {"cpumoe", "kvu", "nokvu", "nkvo", "swafull"}


def _int(flag: str, value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SettingsError(f"{flag} needs a whole number, not '{value}'") from None
    if n < minimum:
        raise SettingsError(f"{flag} must be at least {minimum}, not {n}")
    return n


def settings_from_args(args: Sequence[str]) -> FitSettings:
    """Read the flags that change memory use; every other flag is ignored."""
    s: dict[str, object] = {}
    overrides: list[Override] = []
    parallel_set = False
    unified: bool | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        what = _ALIASES.get(flag)
        i += 1
        if what is None:
            continue
        if what in _NO_VALUE:
            value = ""
        elif eq:
            value = inline
        elif i < len(args):
            value = args[i]
            i += 1
        else:
            raise SettingsError(f"{flag} needs a value")
        if what == "ctx":
            s["ctx_size"] = _int(flag, value, 0)
        elif what == "ngl":
            s["n_gpu_layers"] = None if value in ("auto", "all", "-1", "-2") else _int(flag, value, 0)
        elif what == "ot":
            overrides += parse_overrides(value)
        elif what == "cpumoe":
            overrides.append(compile_override(EXPERT_REGEX, "CPU"))
        elif what == "ncmoe":
            overrides += _per_layer(_int(flag, value, 0), EXPERT_REGEX)
        elif what == "ncffn":
            overrides += _per_layer(_int(flag, value, 0), DENSE_FFN_REGEX)
        elif what == "ts":
            try:
                s["tensor_split"] = tuple(float(x) for x in re.split(r"[,/]+", value) if x)
            except ValueError:
                raise SettingsError(f"{flag} needs numbers like 3,1, not '{value}'") from None
        elif what == "np":
            n = _int(flag, value, -1)
            if n >= 1:
                s["n_parallel"] = n
                parallel_set = True
        elif what == "kvu":
            unified = True
        elif what == "nokvu":
            unified = False
        elif what in ("ctk", "ctv"):
            if value.lower() not in _TYPES:
                raise SettingsError(f"{flag} must be one of {', '.join(sorted(_TYPES))}, not '{value}'")
            s["cache_type_k" if what == "ctk" else "cache_type_v"] = value.upper()
        elif what == "b":
            s["batch_size"] = _int(flag, value, 1)
        elif what == "ub":
            s["ubatch_size"] = _int(flag, value, 1)
        elif what == "fa":
            s["flash_attn"] = value
        elif what == "nkvo":
            s["kv_offload"] = False
        elif what == "swafull":
            s["swa_full"] = True
        elif what == "dev":
            s["no_gpu"] = value.strip().lower() == "none"
    # tools/server/server.cpp: --parallel left at auto means 4 slots with a unified cache;
    # an explicit --parallel keeps common's default (per-slot) unless --kv-unified is given.
    s["kv_unified"] = unified if unified is not None else not parallel_set
    s["overrides"] = tuple(overrides)
    return FitSettings(**s)  # type: ignore[arg-type]
