"""Pre-flight: will a profile fit in the memory a switch to it will have? Pure arithmetic.

A switch replaces the running model, so the memory it will have on each device is what
is free now plus what the replaced container holds there (its processes' GPU memory from
NVML; its anonymous host memory from the container's stats). ``check`` compares that with
the estimate (llm_mcp.hardware.fit_estimate) and says ``fits``, ``tight`` (within the estimate's
error band) or ``wont_fit``, with the numbers. Where the figures come from is
llm_mcp.core.memory_view's business; nothing here reads a file, NVML or Docker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_mcp.core.jobs import SwitchError
from llm_mcp.hardware.fit_estimate import Estimate, verdict

__all__ = ["DeviceFit", "DeviceMemory", "MemorySnapshot", "Preflight", "WontFit", "check", "unknown"]

MiB = 1 << 20
GiB = 1 << 30

Fit = Literal["fits", "tight", "wont_fit", "unknown"]
_ORDER: dict[str, int] = {"fits": 0, "unknown": 1, "tight": 2, "wont_fit": 3}


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    """One device's memory as the switch will find it; bytes."""

    device: str  # "host", "gpu0", ...
    free: int | None  # free now (host: MemAvailable); None: not known
    held: int = 0  # held by the container the switch replaces (freed when it stops)

    @property
    def after(self) -> int | None:
        """Free once the replaced container is gone."""
        return None if self.free is None else self.free + self.held


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """Free memory per device at one moment; host first, then the GPUs in index order."""

    devices: tuple[DeviceMemory, ...]
    replacing: str | None = None  # display name of the model the switch replaces, if any
    error: str | None = None  # why the figures cannot be trusted (GPU sampling failed, ...)
    taken_at: float = 0.0

    @property
    def n_gpus(self) -> int:
        return sum(1 for d in self.devices if d.device != "host")

    def device(self, name: str) -> DeviceMemory | None:
        return next((d for d in self.devices if d.device == name), None)

    def moved_more_than(self, other: MemorySnapshot, band: Mapping[str, int]) -> bool:
        """Whether free-after on any device differs from ``other`` by more than that device's band."""
        if [d.device for d in self.devices] != [d.device for d in other.devices]:
            return True
        for mine, theirs in zip(self.devices, other.devices, strict=True):
            a, b = mine.after, theirs.after
            if (a is None) != (b is None):
                return True
            if a is not None and b is not None and abs(a - b) > band.get(mine.device, 0):
                return True
        return False


@dataclass(frozen=True, slots=True)
class DeviceFit:
    device: str
    need: int  # the estimate's total on this device
    band: int  # the estimate's own error there, either way
    free_now: int | None
    held: int
    verdict: Fit

    @property
    def free(self) -> int | None:
        """What the switch will have: free now plus what the replaced model holds."""
        return None if self.free_now is None else self.free_now + self.held

    def to_dict(self) -> dict[str, Any]:
        # the wire contract (docs/protocol.md, list_models "fit")
        return {"device": self.device, "need_bytes": self.need, "free_bytes": self.free,
                "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class Preflight:
    """The verdict for one profile, with the numbers behind it."""

    verdict: Fit
    devices: tuple[DeviceFit, ...] = ()
    replacing: str | None = None
    error: str | None = None  # why the verdict is unknown
    notes: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        """One line for people: the device that decides, its need and what will be free."""
        if self.verdict == "unknown":
            return f"fit unknown: {self.error}" if self.error else "fit unknown"
        decisive = [d for d in self.devices if d.verdict == self.verdict] or list(self.devices)
        if not decisive:
            return self.verdict
        if self.verdict == "fits":  # the one with the least room
            decisive = [min(decisive, key=lambda d: (d.free or 0) - d.need)]
        parts = []
        for d in decisive:
            text = f"needs {size(d.need)} (±{size(d.band)}) on {d.device}, {size(d.free)} free"
            if d.held and self.replacing:
                text += f" (counting the {size(d.held)} that {self.replacing} holds)"
            parts.append(text)
        label = {"fits": "fits", "tight": "tight", "wont_fit": "does not fit"}[self.verdict]
        return f"{label}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "message": self.message,
                "devices": [d.to_dict() for d in self.devices], "error": self.error}


def unknown(error: str) -> Preflight:
    """No verdict: the model file cannot be read, the flags cannot be estimated, no memory figures."""
    return Preflight("unknown", error=error)


def check(est: Estimate, memory: MemorySnapshot) -> Preflight:
    """The estimate against the memory the switch will have (free now + what it replaces holds).

    A device is ``fits`` when that covers the estimate plus its band, ``tight`` within the
    band either way, ``wont_fit`` below; the profile's verdict is the worst device's. A
    device without a free figure is ``unknown``, which never outweighs ``tight`` or ``wont_fit``.
    """
    if memory.error:
        return Preflight("unknown", replacing=memory.replacing, error=memory.error, notes=est.notes)
    after = {d.device: a for d in memory.devices if (a := d.after) is not None}
    per = verdict(est, after).per_device  # fit_estimate's rule, so `fit` and the switch agree
    devices = []
    for d in est.devices:
        mem = memory.device(d.device)
        devices.append(DeviceFit(d.device, d.total, d.band, mem.free if mem else None,
                                 mem.held if mem else 0, per.get(d.device, "unknown")))
    worst: Fit = max((d.verdict for d in devices), key=_ORDER.__getitem__, default="unknown")
    return Preflight(worst, tuple(devices), memory.replacing, notes=est.notes)


def size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:.2f} GiB" if abs(n) >= GiB else f"{n / MiB:.1f} MiB"


class WontFit(SwitchError):
    """A switch refused by the pre-flight; nothing was stopped. ``preflight`` has the numbers."""

    def __init__(self, profile_id: str, result: Preflight) -> None:
        self.preflight = result
        super().__init__(
            f"'{profile_id}' {result.message}; nothing was stopped, the running model goes on",
            reason="wont_fit",
            hint=f"`llm-mcp fit {profile_id} --suggest` (MCP: fit_model) shows settings that fit; "
                 "force loads it anyway",
        )
