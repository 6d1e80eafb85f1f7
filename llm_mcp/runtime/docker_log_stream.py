"""Docker's log stream, decoded in bulk: HTTP chunks -> multiplexed frames -> lines.

docker-py reads a followed log two small reads per frame through urllib3, which
costs more CPU than everything else the daemon does with a line. Reading the
response body in large pieces and splitting it here costs a few microseconds a
line. Pure: bytes in, (timestamp, text) lines out.

The body is HTTP/1.1 chunked; inside it, each frame is an 8-byte header (stream:
0 stdin, 1 stdout, 2 stderr; three zero bytes; big-endian payload length) and
one log entry. stdout and stderr have one LineAssembler each, so a long line
split into entries on one stream never takes in entries of the other.
"""

from __future__ import annotations

import struct

from llm_mcp.runtime.log_lines import MAX_LINE_BYTES, LineAssembler

_HEADER = struct.Struct(">BxxxL")


class ChunkedDecoder:
    """Transfer-Encoding: chunked, undone incrementally."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0  # payload bytes still due in the current chunk
        self._crlf = 0  # the CRLF after a chunk's payload, still to skip
        self.done = False  # the last (zero-size) chunk arrived

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        buffer, pos, out = self._buffer, 0, bytearray()
        while pos < len(buffer) and not self.done:
            if self._crlf:
                skip = min(self._crlf, len(buffer) - pos)
                pos += skip
                self._crlf -= skip
            elif self._left:
                take = min(self._left, len(buffer) - pos)
                out += buffer[pos:pos + take]
                pos += take
                self._left -= take
                if not self._left:
                    self._crlf = 2
            else:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    break  # the size line is not complete yet
                size_text = bytes(buffer[pos:end]).split(b";", 1)[0].strip()
                pos = end + 2
                self._left = int(size_text, 16) if size_text else 0
                self.done = self._left == 0
        del buffer[:pos]
        return bytes(out)


class FrameSplitter:
    """Multiplexed frames out of the de-chunked body: (stream, payload) pairs."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= _HEADER.size:
            kind, length = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + length
            if end > len(buffer):
                break
            frames.append((kind, bytes(buffer[start + _HEADER.size:end])))
            start = end
        del buffer[:start]
        return frames


class DockerLogDecoder:
    """A followed log's raw body in, whole lines (docker_timestamp, text) out."""

    def __init__(self, *, chunked: bool, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._chunks = ChunkedDecoder() if chunked else None
        self._frames = FrameSplitter()
        self._lines = {1: LineAssembler(max_line_bytes), 2: LineAssembler(max_line_bytes)}

    @property
    def done(self) -> bool:
        return self._chunks is not None and self._chunks.done

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        body = self._chunks.feed(data) if self._chunks is not None else data
        out: list[tuple[str, str]] = []
        for kind, payload in self._frames.feed(body):
            out += self._lines[2 if kind == 2 else 1].feed(payload)
        return out

    def flush(self) -> list[tuple[str, str]]:
        return self._lines[1].flush() + self._lines[2].flush()
