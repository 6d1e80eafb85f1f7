"""Colour thresholds for the panels: pure functions, no I/O.

Temperature is judged against the GPU's own slowdown temperature (nvtop);
utilisation and memory bars change colour at fixed thresholds (nvitop).
"""

from __future__ import annotations

from typing import Literal

Level = Literal["low", "moderate", "high", "unknown"]
TempLevel = Literal["ok", "warm", "hot", "unknown"]

UTIL_THRESHOLDS = (10.0, 75.0)
MEMORY_THRESHOLDS = (10.0, 80.0)
TEMP_MARGIN_C = 10.0  # yellow this close below the slowdown temperature

LEVEL_STYLE: dict[str, str] = {
    "low": "green",
    "moderate": "yellow",
    "high": "red",
    "unknown": "bright_black",
    "ok": "green",
    "warm": "yellow",
    "hot": "bold red",
}

STATE_STYLE: dict[str, str] = {
    "ready": "bold green",
    "loading": "bold yellow",
    "starting": "bold yellow",
    "stopping": "bold yellow",
    "failed": "bold red",
    "stopped": "bold bright_black",
    "unknown": "bold magenta",
}


def usage_level(pct: float | None, thresholds: tuple[float, float] = UTIL_THRESHOLDS) -> Level:
    if pct is None:
        return "unknown"
    low, high = thresholds
    if pct >= high:
        return "high"
    if pct < low:
        return "low"
    return "moderate"


def temperature_level(temp: float | None, slowdown: float | None, margin: float = TEMP_MARGIN_C) -> TempLevel:
    """Red at or above the GPU's slowdown temperature, yellow within `margin` below it."""
    if temp is None or slowdown is None:
        return "unknown"
    if temp >= slowdown:
        return "hot"
    if temp >= slowdown - margin:
        return "warm"
    return "ok"
