"""Whole log lines out of Docker's log frames, each bounded in size.

Docker stores a long line as several log entries of at most 16 KiB; with
timestamps each entry (frame) starts with its own timestamp, and only the last
one ends with a newline. LineAssembler joins the entries of one line, keeps the
first entry's timestamp and drops the others, and cuts a line longer than the
bound with a visible marker. Pure: bytes in, (timestamp, text) out.
"""

from __future__ import annotations

import codecs
import re

MAX_LINE_BYTES = 64 * 1024  # longer lines are cut (with a marker) before they reach memory or disk

# Docker's RFC 3339 timestamp with nanoseconds, as `timestamps=True` prefixes each entry.
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_TIMESTAMP_MAX = 40


_MARKER = re.compile(r" \[\.\.\. \d+ more bytes cut by llm-mcp\]\Z")


def cut_marker(cut_bytes: int) -> str:
    return f" [... {cut_bytes} more bytes cut by llm-mcp]"


def cut_text(text: str, max_bytes: int = MAX_LINE_BYTES) -> str:
    """`text` if it fits in `max_bytes` of UTF-8, else its head plus a marker saying how much went."""
    if len(text) * 4 <= max_bytes:  # cheap test first: no character takes more than 4 bytes
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    marker = _MARKER.search(text)
    if marker is not None and len(data) - (marker.end() - marker.start()) <= max_bytes:
        return text  # already cut (by LineAssembler): the bound is on what was kept
    head = _decode_head(data[:max_bytes])
    return head + cut_marker(len(data) - len(head.encode("utf-8", "replace")))


def _decode_head(data: bytes) -> str:
    """Decode a prefix, leaving out a character cut in half at its end."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


class LineAssembler:
    """Feed it Docker log frames (one entry each); it returns the complete lines."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._ts: str | None = None  # timestamp of the line being assembled (None: no line open)
        self._parts: list[bytes] = []
        self._kept = 0
        self._cut = 0

    def feed(self, frame: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        ts, body = _split_timestamp(frame)
        if self._ts is None:
            self._ts = ts
        # else: a continuation entry of a long line; its own timestamp is dropped
        while True:
            head, newline, body = body.partition(b"\n")
            self._add(head)
            if not newline:
                break
            out.append(self._finish())
            if not body:
                break
            # Several lines in one frame: each further line carries its own timestamp.
            self._ts, body = _split_timestamp(body)
        return out

    def flush(self) -> list[tuple[str, str]]:
        """The line still open (the stream ended without its newline), if any."""
        if self._ts is None:
            return []
        return [self._finish()]

    def _add(self, data: bytes) -> None:
        room = self.max_line_bytes - self._kept
        if len(data) > room:
            self._cut += len(data) - max(0, room)
            data = data[:max(0, room)]
        if data:
            self._parts.append(data)
            self._kept += len(data)

    def _finish(self) -> tuple[str, str]:
        data = b"".join(self._parts)
        ts = self._ts or ""
        if self._cut:
            text = _decode_head(data)
            dropped = self._cut + len(data) - len(text.encode("utf-8", "replace"))
            text += cut_marker(dropped)
        else:
            text = data.decode("utf-8", "replace")
            if text.endswith("\r"):  # CRLF line ends
                text = text[:-1]
        self._ts, self._parts, self._kept, self._cut = None, [], 0, 0
        return ts, text


def _split_timestamp(data: bytes) -> tuple[str, bytes]:
    """("TIMESTAMP", rest) for an entry that starts with one and a space, else ("", data)."""
    space = data.find(b" ", 0, _TIMESTAMP_MAX + 1)
    if space > 0 and _TIMESTAMP.fullmatch(data, 0, space):
        return data[:space].decode("ascii"), data[space + 1:]
    return "", data
