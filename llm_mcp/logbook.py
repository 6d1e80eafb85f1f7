"""Container logs that survive switches and daemon restarts.

A bounded ring buffer in memory holds the recent lines of every run, with a
separator line per switch; each container run also gets its own file under the
state dir (bounded in size and in count) so a new daemon can restore history.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# STAMP-PROFILE-RUN.log; the stamp has milliseconds so runs started in the same second sort in order.
RUN_FILE = re.compile(r"^(\d{8}-\d{6}(?:\.\d{3})?)-(?P<profile>.+)-(?P<run>[0-9a-f]{12})\.log$")


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    time: float
    run: str  # container id (12 hex) or "" for daemon notes and separators
    kind: str  # "log" | "separator" | "note"
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "run": self.run, "kind": self.kind,
                "text": self.text}


@dataclass(slots=True)
class RestoredRun:
    """Lines a new daemon reloaded from a run file.

    Docker stamps stdout and stderr on separate pipes, so timestamps are not in
    delivery order: a replay is deduplicated by (timestamp, text), not by "newer than".
    """

    latest: str | None = None  # the newest Docker timestamp in the file
    records: set[tuple[str, str]] = field(default_factory=set)


class Logbook:
    def __init__(
        self,
        directory: Path,
        *,
        capacity: int = 5000,
        max_file_bytes: int = 20 * 1024 * 1024,
        max_files: int = 30,
        on_line: Callable[[LogLine], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.capacity = capacity
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.on_line = on_line
        self.clock = clock
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._seq = 0
        self._run: str = ""
        self._file: IO[str] | None = None
        self._file_bytes = 0
        self._truncated = False
        directory.mkdir(parents=True, exist_ok=True)

    # ---- writing -----------------------------------------------------------

    def _add(self, kind: str, text: str, run: str) -> LogLine:
        self._seq += 1
        line = LogLine(self._seq, self.clock(), run, kind, text)
        self._lines.append(line)
        if self.on_line is not None:
            self.on_line(line)
        return line

    def separator(self, text: str) -> LogLine:
        line = self._add("separator", f"--- {text} ---", "")
        self._write_file(line.text, None)
        return line

    def note(self, text: str) -> LogLine:
        line = self._add("note", text, "")
        self._write_file(f"[llm-mcp] {text}", None)
        return line

    def begin_run(self, run: str, profile: str, *, resume: bool = False) -> Path:
        """Direct lines of container `run` into its own file (appending when resuming)."""
        self._close_file()
        self._run = run[:12]
        existing = self.run_file(self._run)
        now = self.clock()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        path = existing if existing and resume else self.directory / f"{stamp}-{profile}-{self._run}.log"
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._file_bytes = path.stat().st_size
        self._truncated = False
        self._prune()
        return path

    def append(self, text: str, timestamp: str | None = None) -> LogLine:
        line = self._add("log", text, self._run)
        self._write_file(text, timestamp)
        return line

    def end_run(self) -> None:
        self._close_file()

    def _write_file(self, text: str, timestamp: str | None) -> None:
        if self._file is None or self._truncated:
            return
        record = f"{timestamp or _iso(self.clock())} {text}\n"
        if self._file_bytes + len(record) > self.max_file_bytes:
            self._file.write(f"{_iso(self.clock())} [llm-mcp] log file reached "
                             f"{self.max_file_bytes} bytes; further lines only in memory\n")
            self._truncated = True
            return
        self._file.write(record)
        self._file_bytes += len(record)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _prune(self) -> None:
        files = self.run_files()
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)

    # ---- reading -----------------------------------------------------------

    def run_files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.log") if RUN_FILE.match(p.name))

    def run_file(self, run: str) -> Path | None:
        for path in self.run_files():
            if path.name.endswith(f"-{run[:12]}.log"):
                return path
        return None

    def restore_run(self, run: str) -> RestoredRun:
        """Load a run's file into memory (daemon restart): what it held, to skip on replay."""
        restored = RestoredRun()
        path = self.run_file(run)
        if path is None:
            return restored
        for record in path.read_text(encoding="utf-8", errors="replace").splitlines()[-self.capacity:]:
            ts, _, text = record.partition(" ")
            if text.startswith("[llm-mcp] ") or text.startswith("--- "):
                continue
            self._seq += 1
            self._lines.append(LogLine(self._seq, self.clock(), run[:12], "log", text))
            restored.records.add((ts, text))
            restored.latest = max(restored.latest or ts, ts)
        return restored

    @property
    def current_run(self) -> str:
        return self._run

    def previous_run(self) -> str | None:
        runs = [m.group("run") for p in self.run_files() if (m := RUN_FILE.match(p.name))]
        runs = [r for r in runs if r != self._run]
        return runs[-1] if runs else None

    def tail(self, n: int, pattern: re.Pattern[str] | None = None, run: str = "all") -> list[LogLine]:
        """The last `n` lines; run is "all" (with separators), "current", "previous" or an id."""
        if run == "current":
            wanted: str | None = self._run
        elif run == "previous":
            wanted = self.previous_run()
            if wanted is None:
                return []
        elif run == "all":
            wanted = None
        else:
            wanted = run[:12]
        lines = [ln for ln in self._lines if wanted is None or ln.run == wanted]
        if wanted is not None and not lines:
            lines = self._from_file(wanted)
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln.text)]
        return lines[-n:] if n > 0 else []

    def _from_file(self, run: str) -> list[LogLine]:
        path = self.run_file(run)
        if path is None:
            return []
        out = []
        for i, record in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            _, _, text = record.partition(" ")
            out.append(LogLine(-(i + 1), 0.0, run, "log", text))
        return out

    def since(self, seq: int) -> list[LogLine]:
        return [ln for ln in self._lines if ln.seq > seq]

    def close(self) -> None:
        self._close_file()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"
