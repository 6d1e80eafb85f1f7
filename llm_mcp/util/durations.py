"""A length of time as people read it: one definition for the CLI, MCP text and the monitor."""

from __future__ import annotations


def duration(seconds: float | None, *, compact: bool = False) -> str:
    """'1.2s', '3m 05s', '2h 03m', '3d 4h'; compact (the monitor's narrow columns):
    '1.2s', '42s', '3m05s', '2h03m', '3d04h'. None: '-' ('n/a' compact)."""
    if seconds is None:
        return "n/a" if compact else "-"
    seconds = max(0.0, seconds) if compact else seconds
    if seconds < (10 if compact else 60):
        return f"{seconds:.1f}s"
    total = int(seconds) if compact else round(seconds)
    if total < 60:
        return f"{total}s"
    gap = "" if compact else " "
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{gap}{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < (24 if compact else 48):
        return f"{hours}h{gap}{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if compact else f"{days}d {hours}h"
