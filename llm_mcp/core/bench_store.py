"""Measured speed per profile (`llm-mcp bench`), kept in a private JSON file in the state dir.

A result counts for a profile while the container it measured would be the same:
the same image and the same llama-server arguments (model, ctx, layers, -ot,
flags). Editing any of those makes the old number stale, so it is no longer shown
or used, but it stays in the file (bounded) until newer results push it out.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_mcp.config.models_conf import Profile
from llm_mcp.util.safe_files import open_private, private_dir, write_atomic

KEEP_PER_PROFILE = 5  # the latest results of each profile
KEEP_PROFILES = 200  # profiles remembered (the least recently measured go first)
MAX_FILE_BYTES = 1 << 20  # a larger file is not ours to parse: start afresh

# The fields a result has on the wire (list_models' "measured"); "setup" stays in the file.
WIRE_FIELDS = ("date", "image", "runs", "prompt_tokens", "gen_tokens", "load_seconds", "prompt_tps",
               "gen_tps", "memory_bytes", "memory_source")


def setup_key(profile: Profile) -> str:
    """What decides the speed: the image and llama-server's arguments (ports inside are fixed)."""
    payload = json.dumps([profile.image, profile.server_args()]).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the runs (rounded for people; at least one value)."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def wire(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in WIRE_FIELDS}


class BenchStore:
    """The results file: read once, rewritten whole (atomic, 0600) after each measured profile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, list[dict[str, Any]]] = _read(path)

    def latest(self, profile: Profile) -> dict[str, Any] | None:
        """The newest result for this profile as configured now (wire fields), or None."""
        key = setup_key(profile)
        for record in reversed(self._data.get(profile.id, [])):
            if record.get("setup") == key:
                return wire(record)
        return None

    def record(self, profile: Profile, result: dict[str, Any]) -> dict[str, Any]:
        """Add a result (wire fields); returns it. Raises OSError when the file cannot be written."""
        entry = {**wire(result), "setup": setup_key(profile)}
        runs = [r for r in self._data.pop(profile.id, []) if isinstance(r, dict)]
        self._data[profile.id] = [*runs, entry][-KEEP_PER_PROFILE:]  # re-inserted: most recent last
        while len(self._data) > KEEP_PROFILES:
            self._data.pop(next(iter(self._data)))
        private_dir(self.path.parent)
        write_atomic(self.path, json.dumps({"version": 1, "profiles": self._data}, indent=1))
        return wire(entry)


def _read(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The stored results; a missing, oversized or damaged file only costs the old numbers."""
    try:
        with open_private(path, "r") as handle:  # never through a symlink planted at the path
            text = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return {}
    if len(text) > MAX_FILE_BYTES:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    profiles = raw.get("profiles") if isinstance(raw, dict) else None
    if not isinstance(profiles, dict):
        return {}
    return {str(k): [r for r in v if isinstance(r, dict)][-KEEP_PER_PROFILE:]
            for k, v in profiles.items() if isinstance(v, list)}
