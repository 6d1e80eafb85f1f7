"""Container logs that survive switches and daemon restarts.

A ring buffer in memory, bounded in lines and in bytes, holds the recent lines
of every run, with a separator line per switch; each line is cut at
MAX_LINE_BYTES. Each container run also gets its own file under the state dir
(bounded in size and in count) so a new daemon can restore history.

Files are a convenience, memory is the log: a file write that fails (a full or
read-only disk) never raises into the follower. The book stops writing files,
says so once in the log, reports it in `write_error`, and tries again at the
next run.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_mcp.runtime.log_lines import MAX_LINE_BYTES, cut_text
from llm_mcp.util.safe_files import open_private_fd, private_dir

log = logging.getLogger("llm_mcp.core.logbook")

# STAMP-PROFILE-RUN.log; the stamp has milliseconds so runs started in the same second sort in order.
RUN_FILE = re.compile(r"^(?P<stamp>\d{8}-\d{6}(?:\.\d{3})?)-(?P<profile>.+)-(?P<run>[0-9a-f]{12})\.log$")
LINE_OVERHEAD = 150  # bytes a LogLine costs beyond its text (object, float, run id, deque slot)


class Pattern(Protocol):
    def search(self, string: str) -> Any: ...


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
        max_bytes: int = 32 * 1024 * 1024,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_file_bytes: int = 20 * 1024 * 1024,
        max_files: int = 30,
        on_line: Callable[[LogLine], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.on_line = on_line
        self.clock = clock
        self._lines: deque[LogLine] = deque()
        self._bytes = 0  # what the ring holds, in LogLine costs
        self._seq = 0
        self._run: str = ""
        self._fd: int | None = None
        self._pending: list[bytes] = []  # records not yet written (flushed per batch)
        self._file_bytes = 0
        self._truncated = False
        self._restored: dict[str, RestoredRun] = {}
        self.write_error: str | None = None  # why run files are not written now (None: they are)
        self._dir_ready()

    # ---- writing -----------------------------------------------------------

    def _add(self, kind: str, text: str, run: str, at: float | None = None) -> LogLine:
        text = cut_text(text, self.max_line_bytes)
        self._seq += 1
        line = LogLine(self._seq, self.clock() if at is None else at, run, kind, text)
        self._lines.append(line)
        self._bytes += sys.getsizeof(text) + LINE_OVERHEAD
        while len(self._lines) > self.capacity or (self._bytes > self.max_bytes and len(self._lines) > 1):
            old = self._lines.popleft()
            self._bytes -= sys.getsizeof(old.text) + LINE_OVERHEAD
        if self.on_line is not None:
            self.on_line(line)
        return line

    def separator(self, text: str) -> LogLine:
        line = self._add("separator", f"--- {text} ---", "")
        self._write_file(line.text, None)
        self.flush()
        return line

    def note(self, text: str) -> LogLine:
        line = self._add("note", text, "")
        self._write_file(f"[llm-mcp] {line.text}", None)
        self.flush()
        return line

    def begin_run(self, run: str, profile: str, *, resume: bool = False) -> Path:
        """Direct lines of container `run` into its own file (appending when resuming).

        Returns the file's path; when the state dir cannot be written the lines go to
        memory only (see `write_error`) and this is a retry of the files.
        """
        self._close_file()
        self._run = run[:12]
        now = self.clock()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        path = self.directory / f"{stamp}-{profile}-{self._run}.log"
        self._truncated = False
        if not self._dir_ready():
            return path
        existing = self.run_file(self._run)
        if existing and resume:
            path = existing
        try:
            self._fd = open_private_fd(path, "a")
            self._file_bytes = os.fstat(self._fd).st_size
            self._prune()
        except OSError as exc:
            self._files_failed(exc)
            return path
        if self.write_error is not None:
            self.write_error = None
            self.note(f"log files are written again ({self.directory})")
        return path

    def append(self, text: str, timestamp: str | None = None, *, flush: bool = True) -> LogLine:
        """A line of the current run; `flush=False` leaves the file write to `flush()` (batches)."""
        line = self._add("log", text, self._run)
        self._write_file(line.text, timestamp)
        if flush:
            self.flush()
        return line

    def end_run(self) -> None:
        self._close_file()

    def flush(self) -> None:
        if self._fd is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self._files_failed(exc)

    def _write_file(self, text: str, timestamp: str | None) -> None:
        if self._fd is None or self._truncated:
            return
        record = f"{timestamp or _iso(self.clock())} {text}\n".encode("utf-8", "replace")
        if self._file_bytes + len(record) > self.max_file_bytes:
            record = (f"{_iso(self.clock())} [llm-mcp] log file reached {self.max_file_bytes} bytes; "
                      "further lines only in memory\n").encode()
            self._truncated = True
        self._pending.append(record)
        self._file_bytes += len(record)

    def _dir_ready(self) -> bool:
        try:
            private_dir(self.directory)
        except OSError as exc:
            self._files_failed(exc)
            return False
        return True

    def _files_failed(self, exc: OSError) -> None:
        """Stop writing files (memory keeps every line); say so once, retry at the next run."""
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                log.debug("closing a run file after a write error", exc_info=True)
        first = self.write_error is None
        self.write_error = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        if first:
            log.warning("cannot write log files in %s: %s", self.directory, exc)
            self._add("note", f"cannot write log files in {self.directory} ({self.write_error}); "
                      "keeping the log in memory only, retrying at the next run", "")

    def _close_file(self) -> None:
        self.flush()
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self._files_failed(exc)

    def _prune(self) -> None:
        files = self.run_files()
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)

    # ---- restoring after a daemon restart ----------------------------------------

    def restore_history(self) -> None:
        """Load the newest run files into memory, oldest first, each after a separator.

        Bounded like the ring (lines and bytes): only the newest part of the history
        is read. Runs restored here are not loaded again by `restore_run`.
        """
        chosen: list[tuple[Path, re.Match[str], list[str]]] = []
        lines_left, bytes_left = self.capacity, self.max_bytes
        for path in reversed(self.run_files()):
            match = RUN_FILE.match(path.name)
            if match is None or lines_left <= 0 or bytes_left <= 0:
                break
            records = _read_records(path, bytes_left)[-lines_left:]
            chosen.append((path, match, records))
            lines_left -= len(records) + 1
            bytes_left -= sum(len(r) for r in records) + LINE_OVERHEAD * (len(records) + 1)
        for _, match, records in reversed(chosen):
            run = match.group("run")
            self._add("separator", f"--- restored run {run} of {match.group('profile')} "
                      f"(started {_stamp_text(match.group('stamp'))}) ---", "")
            self._restored[run] = self._load_records(run, records, notes=True)

    def restore_run(self, run: str) -> RestoredRun:
        """Load a run's file into memory (daemon restart): what it held, to skip on replay."""
        run = run[:12]
        if run in self._restored:
            return self._restored[run]
        path = self.run_file(run)
        if path is None:
            return RestoredRun()
        restored = self._load_records(run, _read_records(path, self.max_bytes)[-self.capacity:])
        self._restored[run] = restored
        return restored

    def _load_records(self, run: str, records: list[str], *, notes: bool = False) -> RestoredRun:
        restored = RestoredRun()
        for record in records:
            ts, _, text = record.partition(" ")
            if text.startswith("--- "):
                continue
            if text.startswith("[llm-mcp] "):
                if notes:
                    self._add("note", text.removeprefix("[llm-mcp] "), "", _ts_seconds(ts))
                continue
            self._add("log", text, run, _ts_seconds(ts))
            restored.records.add((ts, text))
            restored.latest = max(restored.latest or ts, ts)
        return restored

    # ---- reading -----------------------------------------------------------

    def run_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.glob("*.log") if RUN_FILE.match(p.name))
        except OSError:
            return []

    def run_file(self, run: str) -> Path | None:
        for path in self.run_files():
            if path.name.endswith(f"-{run[:12]}.log"):
                return path
        return None

    @property
    def current_run(self) -> str:
        return self._run

    def previous_run(self) -> str | None:
        runs = [m.group("run") for p in self.run_files() if (m := RUN_FILE.match(p.name))]
        runs = [r for r in runs if r != self._run]
        return runs[-1] if runs else None

    def select(self, run: str = "all") -> tuple[list[LogLine], Path | None]:
        """The lines in memory of `run` ("all", "current", "previous" or an id), copied, plus the
        run's file to read instead when none are in memory. Cheap: call it on the event loop."""
        if run == "current":
            wanted: str | None = self._run
        elif run == "previous":
            wanted = self.previous_run()
            if wanted is None:
                return [], None
        elif run == "all":
            wanted = None
        else:
            wanted = run[:12]
        lines = list(self._lines) if wanted is None else [ln for ln in self._lines if ln.run == wanted]
        if wanted is not None and not lines:
            return [], self.run_file(wanted)
        return lines, None

    def tail(self, n: int, pattern: Pattern | None = None, run: str = "all") -> list[LogLine]:
        """The last `n` lines; run is "all" (with separators), "current", "previous" or an id.

        Blocking (it may read a run file, and the pattern is not bounded in time): for
        internal use; client queries go through log_query.
        """
        lines, path = self.select(run)
        if path is not None:
            lines = self.read_file(path)
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln.text)]
        return lines[-n:] if n > 0 else []

    def read_file(self, path: Path) -> list[LogLine]:
        """The records of a run file (its newest part, as much as the ring holds) as lines."""
        match = RUN_FILE.match(path.name)
        run = match.group("run") if match else ""
        records = _read_records(path, self.max_bytes)[-self.capacity:]
        out = []
        for i, record in enumerate(records):
            ts, _, text = record.partition(" ")
            out.append(LogLine(-(len(records) - i), _ts_seconds(ts) or 0.0, run, "log", text))
        return out

    def since(self, seq: int) -> list[LogLine]:
        return [ln for ln in self._lines if ln.seq > seq]

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._close_file()


def _read_records(path: Path, max_bytes: int) -> list[str]:
    """The records of a run file: its last `max_bytes` bytes, split on "\\n" only.

    Never str.splitlines(): it also splits on \\r, \\f, \\v, \\x1c-\\x1e, \\x85,
    \\u2028 and \\u2029, which a container may print inside a line.
    """
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    if start > 0:
        data = data[data.find(b"\n") + 1:]  # drop the record cut in half
    records = data.decode("utf-8", "replace").split("\n")
    if records and records[-1] == "":
        records.pop()
    return records


_SECONDS: dict[str, float] = {}


def _ts_seconds(ts: str) -> float | None:
    """Unix time of a Docker timestamp (2026-01-01T00:00:00.123456789Z); None if it is not one."""
    if len(ts) < 20 or not ts.endswith("Z") or ts[10] != "T":
        return None
    head = ts[:19]
    base = _SECONDS.get(head)
    if base is None:
        try:
            base = float(calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")))
        except ValueError:
            return None
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        _SECONDS[head] = base
    frac = ts[19:-1]
    try:
        return base + (float(frac) if frac.startswith(".") else 0.0)
    except ValueError:
        return base


def _stamp_text(stamp: str) -> str:
    """20261201-150405.123 -> 2026-12-01 15:04:05 (local time, as the file name has it)."""
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"
