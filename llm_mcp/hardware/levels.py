"""Colour levels for GPU readings: pure functions shared by the sampler and the monitor.

Temperature is judged against the GPU's own slowdown temperature (nvtop);
utilisation and memory change level at fixed thresholds (nvitop).
"""

from __future__ import annotations

from typing import Literal

TemperatureLevel = Literal["ok", "warm", "hot", "unknown"]
UsageLevel = Literal["low", "moderate", "high", "unknown"]


def temperature_level(
    temp: float | None, slowdown: float | None, *, margin: float = 10.0
) -> TemperatureLevel:
    """Hot at or above the GPU's own slowdown temperature, warm within `margin` below it."""
    if temp is None or slowdown is None:
        return "unknown"
    if temp >= slowdown:
        return "hot"
    if temp >= slowdown - margin:
        return "warm"
    return "ok"


def usage_level(pct: float | None, low: float = 10.0, high: float = 80.0) -> UsageLevel:
    """Fixed thresholds for utilisation and memory bars: below `low`, up to `high`, above."""
    if pct is None:
        return "unknown"
    if pct >= high:
        return "high"
    if pct < low:
        return "low"
    return "moderate"
