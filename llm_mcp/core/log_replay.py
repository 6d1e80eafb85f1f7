"""Where to resume a container's log stream without losing or repeating lines.

Docker stamps stdout and stderr on separate pipes, so lines are not saved in
timestamp order: a follower re-reads a margin before the newest saved line, and
the lines already saved in that margin are skipped by (timestamp, text).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

REPLAY_MARGIN_S = 5.0
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


def docker_ts_seconds(ts: str) -> float | None:
    match = _TS.match(ts)
    if not match:
        return None
    base = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp()
    return base + float("0." + (match.group(2) or "0"))


def recent_records(path: Path | None) -> tuple[float | None, set[tuple[str, str]]]:
    """From a run file `TIMESTAMP TEXT` per line: (since, the lines already there after since)."""
    if path is None:
        return None, set()
    try:
        with path.open("rb") as handle:
            start = max(0, path.stat().st_size - (1 << 20))
            handle.seek(start)
            data = handle.read()
    except OSError:
        return None, set()
    if start > 0:
        data = data[data.find(b"\n") + 1:]  # drop the record cut in half
    # On "\n" only: splitlines() also splits on \r, \f, \x85, \u2028... which a line may hold.
    records = [r for r in data.decode("utf-8", "replace").split("\n") if r]
    pairs = [(ts, text) for ts, _, text in (r.partition(" ") for r in records)
             if not text.startswith(("[llm-mcp] ", "--- "))]
    stamps = [s for ts, _ in pairs if (s := docker_ts_seconds(ts)) is not None]
    if not stamps:
        return None, set()
    since = max(0.0, max(stamps) - REPLAY_MARGIN_S)
    return since, {(ts, text) for ts, text in pairs if (docker_ts_seconds(ts) or 0.0) >= since}
