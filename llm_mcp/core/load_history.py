"""How long each profile took to load, so the next load can show an estimated percentage."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from llm_mcp.util.safe_files import private_dir, write_atomic

KEEP = 10


class LoadHistory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, list[float]] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self._data = {str(k): [float(x) for x in v][-KEEP:] for k, v in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self._data = {}  # a missing or damaged history only costs the estimate

    def estimate(self, profile_id: str) -> float | None:
        """Median of recent successful loads, in seconds; None before the first."""
        samples = self._data.get(profile_id)
        return statistics.median(samples) if samples else None

    def record(self, profile_id: str, seconds: float) -> None:
        self._data.setdefault(profile_id, []).append(round(seconds, 3))
        self._data[profile_id] = self._data[profile_id][-KEEP:]
        # Private (0600 in a 0700 dir) and atomic: a symlink planted at the path is replaced,
        # its target never written.
        private_dir(self.path.parent)
        write_atomic(self.path, json.dumps(self._data, indent=1))


def progress_fraction(elapsed: float, estimate: float | None) -> float | None:
    """Estimated fraction done; never reaches 1.0 before the server says ready."""
    if estimate is None or estimate <= 0:
        return None
    return min(0.99, elapsed / estimate)
