"""Colour thresholds for the panels: pure functions, no I/O.

Temperature is judged against the GPU's own slowdown temperature (nvtop);
utilisation and memory bars change colour at fixed thresholds (nvitop).
"""

from __future__ import annotations

from llm_mcp.hardware.levels import temperature_level, usage_level

__all__ = ["LEVEL_STYLE", "MEMORY_THRESHOLDS", "STATE_STYLE", "TEMP_MARGIN_C", "UTIL_THRESHOLDS",
           "temperature_level", "usage_level"]

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
