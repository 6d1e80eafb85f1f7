"""Container logs that survive switches and daemon restarts, for several containers at once.

A ring buffer in memory, bounded in lines and in bytes across all runs, holds
the recent lines of every run, with separator lines; each line is cut at
MAX_LINE_BYTES. Each container run also gets its own file under the state dir
(bounded in size and in count) so a new daemon can restore history. Several
runs may be open at once (one per running model); every line carries its run
and its model (the profile id), so one model's lines can be read apart.

Files are a convenience, memory is the log: a file write that fails (a full or
read-only disk) never raises into the follower. The book stops writing every
run file, says so once in the log, reports it in `write_error`, and tries again
(for every open run) when the next run begins.
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
KNOWN_RUNS = 1000  # runs begun or restored in this daemon whose start and model are remembered


class Pattern(Protocol):
    def search(self, string: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    time: float
    run: str  # container id (12 hex) or "" for daemon notes and separators
    kind: str  # "log" | "separator" | "note"
    text: str
    model: str | None = None  # the run's profile id; for notes and separators the model they are about

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "run": self.run, "kind": self.kind,
                "text": self.text, "model": self.model}


@dataclass(slots=True)
class RestoredRun:
    """Lines a new daemon reloaded from a run file.

    Docker stamps stdout and stderr on separate pipes, so timestamps are not in
    delivery order: a replay is deduplicated by (timestamp, text), not by "newer than".
    """

    latest: str | None = None  # the newest Docker timestamp in the file
    records: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class _RunWriter:
    """An open run: its file and the records not written yet."""

    run: str
    model: str
    path: Path
    fd: int | None = None  # None: memory only (files failing, or the state dir not writable)
    pending: list[bytes] = field(default_factory=list)  # flushed per batch
    size: int = 0  # bytes in the file, written or pending
    whole: int = 0  # bytes of the file that end on a whole record (a failed write may leave half of one)
    truncated: bool = False  # reached max_file_bytes: further lines only in memory


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
        self._run: str = ""  # the most recently begun run
        self._open: dict[str, _RunWriter] = {}  # in the order they began
        self._newest: dict[str, str] = {}  # model -> its most recently begun run
        self._known: dict[str, tuple[str, str]] = {}  # run -> (stamp, model): begun or restored here
        self._restored: dict[str, RestoredRun] = {}
        self.write_error: str | None = None  # why run files are not written now (None: they are)
        self._dir_ready()

    # ---- writing -----------------------------------------------------------

    def _add(self, kind: str, text: str, run: str, at: float | None = None,
             model: str | None = None) -> LogLine:
        text = cut_text(text, self.max_line_bytes)
        self._seq += 1
        line = LogLine(self._seq, self.clock() if at is None else at, run, kind, text, model)
        self._lines.append(line)
        self._bytes += sys.getsizeof(text) + LINE_OVERHEAD
        while len(self._lines) > self.capacity or (self._bytes > self.max_bytes and len(self._lines) > 1):
            old = self._lines.popleft()
            self._bytes -= sys.getsizeof(old.text) + LINE_OVERHEAD
        if self.on_line is not None:
            self.on_line(line)
        return line

    def separator(self, text: str, *, model: str | None = None) -> LogLine:
        """A divider; with a model, about it (and in its open run's file), see `note`."""
        line = self._add("separator", f"--- {text} ---", "", model=model)
        self._record(self._writer_about(model), line.text, None)
        self.flush()
        return line

    def note(self, text: str, *, model: str | None = None) -> LogLine:
        """llm-mcp's own line. With a model it is about that model and also goes into the model's
        open run file (none: memory only); without, it is daemon-wide and goes into the most
        recently begun run's file while that run is open (the single-model behaviour)."""
        line = self._add("note", text, "", model=model)
        self._record(self._writer_about(model), f"[llm-mcp] {line.text}", None)
        self.flush()
        return line

    def begin_run(self, run: str, profile: str, *, resume: bool = False) -> Path:
        """Direct lines of container `run` (of model `profile`) into its own file, appending when
        resuming. Other open runs stay open; this one becomes the most recent.

        Returns the file's path; when the state dir cannot be written the lines go to
        memory only (see `write_error`) and this is a retry of the files of every open run.
        """
        run = run[:12]
        again = self._open.pop(run, None)
        if again is not None:
            self._close(again)
        now = self.clock()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        writer = _RunWriter(run, profile, self.directory / f"{stamp}-{profile}-{run}.log")
        self._run = run
        self._open[run] = writer
        self._newest[profile] = run
        if self._dir_ready():
            existing = self.run_file(run)
            if existing and resume:
                writer.path = existing
            self._open_files(writer)
        match = RUN_FILE.match(writer.path.name)
        self._remember(run, match.group("stamp") if match else stamp, profile)
        return writer.path

    def append(self, text: str, timestamp: str | None = None, *, flush: bool = True,
               run: str | None = None) -> LogLine:
        """A line of `run` (None: the most recently begun); `flush=False` leaves the file write
        to `flush()` (batches)."""
        run = self._run if run is None else run[:12]
        writer = self._open.get(run)
        line = self._add("log", text, run, model=writer.model if writer else self.model_of(run))
        self._record(writer, line.text, timestamp)
        if flush and writer is not None:
            self._flush(writer)
        return line

    def end_run(self, run: str | None = None) -> None:
        """Close `run`'s file (None: the most recently begun run); it stays `current_run`."""
        writer = self._open.pop(self._run if run is None else run[:12], None)
        if writer is not None:
            self._close(writer)

    def flush(self) -> None:
        """Write what every open run has pending."""
        for writer in list(self._open.values()):
            if not self._flush(writer):
                return

    def open_runs(self) -> list[str]:
        """The runs with an open file writer, oldest first."""
        return list(self._open)

    def _writer_about(self, model: str | None) -> _RunWriter | None:
        if model is None:
            return self._open.get(self._run)
        for writer in reversed(self._open.values()):
            if writer.model == model:
                return writer
        return None

    def _record(self, writer: _RunWriter | None, text: str, timestamp: str | None) -> None:
        if writer is None or writer.fd is None or writer.truncated:
            return
        record = f"{timestamp or _iso(self.clock())} {text}\n".encode("utf-8", "replace")
        if writer.size + len(record) > self.max_file_bytes:
            record = (f"{_iso(self.clock())} [llm-mcp] log file reached {self.max_file_bytes} bytes; "
                      "further lines only in memory\n").encode()
            writer.truncated = True
        writer.pending.append(record)
        writer.size += len(record)

    def _flush(self, writer: _RunWriter) -> bool:
        """False when the write failed (and files stopped)."""
        if writer.fd is None or not writer.pending:
            return True
        data = b"".join(writer.pending)
        writer.pending.clear()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(writer.fd, view):]
        except OSError as exc:
            self._files_failed(exc)
            return False
        writer.whole += len(data)
        return True

    def _open_files(self, new: _RunWriter) -> None:
        """Open the new run's file; after a failure, every open run's file again (appending)."""
        retry = self.write_error is not None
        try:
            new.fd = open_private_fd(new.path, "a")
            new.size = new.whole = os.fstat(new.fd).st_size
            for writer in self._open.values():
                if retry and writer.fd is None and writer is not new:
                    writer.fd = open_private_fd(writer.path, "a")
                    if os.fstat(writer.fd).st_size > writer.whole:  # drop the half record the failure left
                        os.ftruncate(writer.fd, writer.whole)
                    writer.size = writer.whole = os.fstat(writer.fd).st_size
            self._prune()
        except OSError as exc:
            self._files_failed(exc)
            return
        if retry:
            self.write_error = None
            self.note(f"log files are written again ({self.directory})")

    def _dir_ready(self) -> bool:
        try:
            private_dir(self.directory)
        except OSError as exc:
            self._files_failed(exc)
            return False
        return True

    def _files_failed(self, exc: OSError) -> None:
        """Stop writing files (memory keeps every line); say so once, retry at the next run."""
        for writer in self._open.values():
            fd, writer.fd = writer.fd, None
            writer.pending.clear()
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

    def _close(self, writer: _RunWriter) -> None:
        """Flush and close a writer already taken out of the open runs."""
        self._flush(writer)
        fd, writer.fd = writer.fd, None
        writer.pending.clear()
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self._files_failed(exc)

    def _prune(self) -> None:
        """Keep at most max_files run files; an open run's file is never removed."""
        files = self.run_files()
        keep = {w.path.name for w in self._open.values()}
        excess = len(files) - self.max_files
        for old in files:
            if excess <= 0:
                break
            if old.name not in keep:
                old.unlink(missing_ok=True)
                excess -= 1

    def _remember(self, run: str, stamp: str, model: str) -> None:
        self._known.pop(run, None)
        self._known[run] = (stamp, model)
        while len(self._known) > KNOWN_RUNS:
            del self._known[next(iter(self._known))]

    # ---- restoring after a daemon restart ----------------------------------------

    def restore_history(self) -> None:
        """Load the newest run files into memory, oldest first, each after a separator.

        Bounded like the ring (lines and bytes): only the newest part of the history
        is read. Runs restored here are not loaded again by `restore_run`. Lines, notes
        and the separator take the model from the file name.
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
            run, model = match.group("run"), match.group("profile")
            self._add("separator", f"--- restored run {run} of {model} "
                      f"(started {_stamp_text(match.group('stamp'))}) ---", "", model=model)
            self._restored[run] = self._load_records(run, model, records, notes=True)
            self._remember(run, match.group("stamp"), model)

    def restore_run(self, run: str) -> RestoredRun:
        """Load a run's file into memory (daemon restart): what it held, to skip on replay."""
        run = run[:12]
        if run in self._restored:
            return self._restored[run]
        path = self.run_file(run)
        match = RUN_FILE.match(path.name) if path is not None else None
        if path is None or match is None:
            return RestoredRun()
        model = match.group("profile")
        restored = self._load_records(run, model, _read_records(path, self.max_bytes)[-self.capacity:])
        self._restored[run] = restored
        self._remember(run, match.group("stamp"), model)
        return restored

    def _load_records(self, run: str, model: str, records: list[str], *,
                      notes: bool = False) -> RestoredRun:
        restored = RestoredRun()
        for record in records:
            ts, _, text = record.partition(" ")
            if text.startswith("--- "):
                continue
            if text.startswith("[llm-mcp] "):
                if notes:  # in this model's file: about it (a daemon-wide note cannot be told apart)
                    self._add("note", text.removeprefix("[llm-mcp] "), "", _ts_seconds(ts), model)
                continue
            self._add("log", text, run, _ts_seconds(ts), model)
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
        """The most recently begun run ("" before any)."""
        return self._run

    def model_of(self, run: str) -> str | None:
        """The model (profile id) of a run begun or restored here; None when unknown."""
        run = run[:12]
        writer = self._open.get(run)
        if writer is not None:
            return writer.model
        known = self._known.get(run)
        return known[1] if known else None

    def current_run_of(self, model: str) -> str | None:
        """`model`'s most recently begun run, else its newest run file's; None: it never ran."""
        if model in self._newest:
            return self._newest[model]
        runs = self._runs(model)
        return runs[-1] if runs else None

    def previous_run(self, model: str | None = None) -> str | None:
        """The newest run before the current one (of `model`, or of any model)."""
        current = self._run if model is None else self.current_run_of(model)
        runs = [r for r in self._runs(model) if r != current]
        return runs[-1] if runs else None

    def _runs(self, model: str | None) -> list[str]:
        """Runs oldest first by start: the run files, and runs begun here whose file is missing."""
        stamps: dict[str, str] = {}
        for path in self.run_files():
            match = RUN_FILE.match(path.name)
            if match and (model is None or match.group("profile") == model):
                stamps.setdefault(match.group("run"), match.group("stamp"))
        for run, (stamp, of) in self._known.items():
            if model is None or of == model:
                stamps.setdefault(run, stamp)
        return sorted(stamps, key=stamps.__getitem__)

    def select(self, run: str = "all", model: str | None = None) -> tuple[list[LogLine], Path | None]:
        """The lines in memory of `run` ("all", "current", "previous" or an id), copied, plus the
        run's file to read instead when none are in memory. With a model: only its lines (its
        container's, and the notes and separators about it); "current" and "previous" are that
        model's runs. Cheap: call it on the event loop."""
        if run == "current":
            wanted: str | None = self._run if model is None else self.current_run_of(model)
        elif run == "previous":
            wanted = self.previous_run(model)
        elif run == "all":
            lines = list(self._lines) if model is None else [ln for ln in self._lines if ln.model == model]
            return lines, None
        else:
            wanted = run[:12]
        if wanted is None:
            return [], None
        lines = [ln for ln in self._lines if ln.run == wanted and (model is None or ln.model == model)]
        if lines:
            return lines, None
        path = self.run_file(wanted)
        if path is not None and model is not None and _profile_of(path) != model:
            path = None
        return [], path

    def tail(self, n: int, pattern: Pattern | None = None, run: str = "all",
             model: str | None = None) -> list[LogLine]:
        """The last `n` lines; run is "all" (with separators), "current", "previous" or an id;
        model as in `select`.

        Blocking (it may read a run file, and the pattern is not bounded in time): for
        internal use; client queries go through log_query.
        """
        lines, path = self.select(run, model)
        if path is not None:
            lines = self.read_file(path)
        if pattern is not None:
            lines = [ln for ln in lines if pattern.search(ln.text)]
        return lines[-n:] if n > 0 else []

    def read_file(self, path: Path) -> list[LogLine]:
        """The records of a run file (its newest part, as much as the ring holds) as lines."""
        match = RUN_FILE.match(path.name)
        run, model = (match.group("run"), match.group("profile")) if match else ("", None)
        records = _read_records(path, self.max_bytes)[-self.capacity:]
        out = []
        for i, record in enumerate(records):
            ts, _, text = record.partition(" ")
            out.append(LogLine(-(len(records) - i), _ts_seconds(ts) or 0.0, run, "log", text, model))
        return out

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def close(self) -> None:
        """Close every open run's file."""
        while self._open:
            self.end_run(next(iter(self._open)))


def _profile_of(path: Path) -> str | None:
    match = RUN_FILE.match(path.name)
    return match.group("profile") if match else None
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
