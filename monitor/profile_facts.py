"""The measured facts `list_models` gives per profile: memory fit and bench results.

Pure reading of the wire fields (docs/protocol.md): nothing here draws or talks to
the daemon. An older daemon sends neither field; a field that is malformed reads as
absent, so a daemon bug never breaks the picker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.levels import LEVEL_STYLE

# A verdict takes the colour of the level it stands for (llm_mcp.hardware.levels' ok/warm/hot/unknown).
FIT_LEVEL = {"fits": "ok", "tight": "warm", "wont_fit": "hot", "unknown": "unknown"}
FIT_MARK = {"fits": "✓", "tight": "!", "wont_fit": "✗", "unknown": "?"}
FIT_WORD = {"fits": "fits", "tight": "tight", "wont_fit": "won't fit", "unknown": "unknown"}


def fit_style(verdict: str) -> str:
    return LEVEL_STYLE[FIT_LEVEL.get(verdict, "unknown")]


@dataclass(frozen=True, slots=True)
class DeviceFit:
    device: str
    need_bytes: int
    free_bytes: int | None
    verdict: str


@dataclass(frozen=True, slots=True)
class Fit:
    verdict: str
    message: str
    devices: tuple[DeviceFit, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Measured:
    date: float | None
    image: str
    runs: int | None
    gen_tps: Spread | None
    prompt_tps: Spread | None
    load_seconds: Spread | None
    memory_bytes: int | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def fit_of(entry: dict[str, Any]) -> Fit | None:
    """The profile's fit verdict, or None (an older daemon, or a field that makes no sense)."""
    raw = entry.get("fit")
    return parse_fit(raw) if isinstance(raw, dict) else None


def parse_fit(raw: dict[str, Any]) -> Fit | None:
    verdict = raw.get("verdict")
    if verdict not in FIT_LEVEL:
        return None
    devices = []
    for d in raw.get("devices") or []:
        need = _int(d.get("need_bytes")) if isinstance(d, dict) else None
        if need is None:
            continue
        devices.append(DeviceFit(str(d.get("device") or "?"), need, _int(d.get("free_bytes")),
                                 str(d.get("verdict") or "unknown")))
    error = raw.get("error")
    return Fit(str(verdict), str(raw.get("message") or ""), tuple(devices),
               str(error) if error else None)


def fit_sentence(fit: Fit) -> str:
    """The daemon's one line ("does not fit: needs ..."), led by the verdict when it is not already."""
    word = "fit unknown" if fit.verdict == "unknown" else FIT_WORD[fit.verdict]
    text = fit.message or (f"{word}: {fit.error}" if fit.error else word)
    lead = text.lower()
    if not (lead.startswith(word) or lead.startswith("does not fit") or lead.startswith("fit unknown")):
        text = f"{word}: {text}"
    return text


def _spread(raw: Any) -> Spread | None:
    if not isinstance(raw, dict):
        return None
    median = _number(raw.get("median"))
    if median is None:
        return None
    low, high = _number(raw.get("min")), _number(raw.get("max"))
    return Spread(median, median if low is None else low, median if high is None else high)


def measured_of(entry: dict[str, Any]) -> Measured | None:
    """The profile's stored bench result, or None (never measured, or an older daemon)."""
    raw = entry.get("measured")
    if not isinstance(raw, dict):
        return None
    result = Measured(_number(raw.get("date")), str(raw.get("image") or ""), _int(raw.get("runs")),
                      _spread(raw.get("gen_tps")), _spread(raw.get("prompt_tps")),
                      _spread(raw.get("load_seconds")), _int(raw.get("memory_bytes")))
    if result.gen_tps is None and result.prompt_tps is None and result.load_seconds is None:
        return None
    return result


def reports_fit(models: list[dict[str, Any]]) -> bool:
    """Whether the daemon sends fit verdicts at all (an older one does not)."""
    return any("fit" in m for m in models)


def reports_measured(models: list[dict[str, Any]]) -> bool:
    """Whether the daemon sends bench results at all; `"measured": null` means not measured yet."""
    return any("measured" in m for m in models)


def size(nbytes: int | None) -> str:
    """Bytes for people: 21.3 GiB, 812 MiB."""
    if nbytes is None:
        return "n/a"
    mib = nbytes / (1 << 20)
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def device_line(device: DeviceFit) -> str:
    free = "free unknown" if device.free_bytes is None else f"{size(device.free_bytes)} free"
    word = FIT_WORD.get(device.verdict, device.verdict)
    return f"{device.device}: needs {size(device.need_bytes)}, {free} ({word})"


def tps(value: float) -> str:
    """t/s with as many digits as people read: 151.2, 2850."""
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def bench_command(profile_id: str) -> str:
    return f"llm-mcp bench {profile_id}"
