"""tail_logs: the last lines of a run, filtered, without ever blocking the daemon.

A filter is a client's regex; a catastrophic one (`(.*){1,100}[bc]`) can take
minutes per line. So the scan runs in a worker thread (the `regex` package
releases the GIL while it matches), each match has a timeout and the whole scan
a deadline; past it the caller gets a clear error, and everyone else never
noticed. A reply is also bounded in bytes: the newest lines that fit, plus how
many were left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import regex
from anyio.lowlevel import RunVar

from llm_mcp import protocol
from llm_mcp.core.logbook import Logbook, LogLine
from llm_mcp.protocol import ProtocolError

SCAN_DEADLINE_S = 1.0  # a whole filtered scan
MATCH_TIMEOUT_S = 0.25  # one line (the CLI's client-side filter of followed lines)
MAX_REPLY_BYTES = 8 * 1024 * 1024  # well below a client's 64 MiB line limit
MAX_LINES = 10000
MAX_FILTER_CHARS = 1000
RUNS = ("all", "current", "previous")

# At most two scans at once: a burst of slow filters queues, the CPU stays shared.
_SCANNERS: RunVar[anyio.CapacityLimiter] = RunVar("log_query_scanners")


class FilterError(ValueError):
    """The filter is not a valid regex."""


class FilterTimeout(Exception):
    """The filter took too long: a pattern that backtracks catastrophically."""


class LineFilter:
    """A case-insensitive regex search with a time bound; usable from any thread."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_CHARS:
            raise FilterError(f"filter is longer than {MAX_FILTER_CHARS} characters")
        try:
            self.pattern = regex.compile(text, regex.IGNORECASE | regex.VERSION0)
        except (regex.error, OverflowError, RecursionError, ValueError) as exc:
            raise FilterError(f"filter is not a valid regex: {exc}") from None

    def search(self, text: str, timeout: float = MATCH_TIMEOUT_S) -> bool:
        """Does `text` match? Raises FilterTimeout past `timeout` seconds."""
        try:
            return self.pattern.search(text, timeout=max(0.001, timeout), concurrent=True) is not None
        except TimeoutError:
            raise FilterTimeout("filter took too long; simplify it") from None


async def query_logs(logbook: Logbook, *, lines: int = 100, filter: str = "", run: str = "all",
                     model: str | None = None, max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
    """The tail_logs result: {"lines", "run", "model", "truncated", "omitted"}; ProtocolError on
    bad input.

    With a model: only its lines (its container's, and the notes and separators about it), and
    "current"/"previous" are its runs. A model that never ran has no lines, not an error (the
    daemon checks ids against models.conf).
    """
    if run not in RUNS:
        raise ProtocolError(protocol.INVALID_PARAMS, f"run must be one of {', '.join(RUNS)}")
    wanted = max(0, min(int(lines), MAX_LINES))
    selected, path = logbook.select(run, model)  # on the loop: the ring changes only here
    try:
        async with _scanners():
            found, omitted = await anyio.to_thread.run_sync(
                _scan, lambda: logbook.read_file(path) if path is not None else selected, filter,
                wanted, max_bytes, abandon_on_cancel=True)
    except FilterError as exc:
        raise ProtocolError(protocol.INVALID_PARAMS, str(exc), {
            "reason": "invalid_filter", "hint": "filter is a regex (case-insensitive); "
            "escape special characters to match them literally"}) from None
    except FilterTimeout:
        raise ProtocolError(protocol.INVALID_PARAMS, "filter took too long; simplify it", {
            "reason": "filter_timeout",
            "hint": f"the filter must scan the log within {SCAN_DEADLINE_S:g} s; avoid nested "
                    "repetition such as (.*)* or (a+)+"}) from None
    return {"lines": found, "run": run, "model": model, "truncated": omitted > 0, "omitted": omitted}


def _scanners() -> anyio.CapacityLimiter:
    try:
        return _SCANNERS.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(2)
        _SCANNERS.set(limiter)
        return limiter


def _scan(source: Callable[[], list[LogLine]], filter_text: str, wanted: int,
          max_bytes: int) -> tuple[list[dict[str, Any]], int]:
    """In a worker thread: filter newest first, then keep what fits in `max_bytes`."""
    deadline = time.monotonic() + SCAN_DEADLINE_S
    matcher = LineFilter(filter_text) if filter_text else None
    matched: list[LogLine] = []
    if wanted > 0:
        for line in reversed(source()):
            if matcher is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FilterTimeout("filter took too long; simplify it")
                if not matcher.search(line.text, timeout=left):
                    continue
            matched.append(line)
            if len(matched) >= wanted:
                break
    out: list[dict[str, Any]] = []
    used = 400  # the envelope: {"jsonrpc", "id", "result": {"run", "model", "truncated", "omitted"}}
    for line in matched:
        entry = line.to_dict()
        size = len(json.dumps(entry)) + 1
        if used + size > max_bytes:
            break
        out.append(entry)
        used += size
    out.reverse()
    return out, len(matched) - len(out)
