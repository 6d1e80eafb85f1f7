"""A minimal HTTP/1.1 client for relaying to the models' servers (docs/proxy.md "Performance").

The endpoint relays one answer per request and needs no redirects, cookies, proxies,
TLS or decoding: a request goes out as written, the answer's head is parsed and its
body comes back as raw bytes (chunked transfer decoded; Content-Length; or read to
close; chunks that arrived together come out together). httpx cost several times the
CPU per streamed chunk and per request (its pool bookkeeping scans every connection,
and anyio's socket streams pause and resume the transport's reading around every
read), which cost streams tokens and time to first token on a busy machine
(bench/proxy_overhead.py). It runs on asyncio's streams, as the daemon (uvicorn) does.

Idle connections are kept per model (as many as the caller says its server can spare
threads for: see proxy_gate.Target.idle_limit) and dropped when the model's endpoint
changes, when they have been idle longer than llama-server keeps them, or on any
error; a connection whose answer was not read to the end is closed, never reused
(closing it is also how a hung-up client stops llama-server's generation). A request
on a reused connection that the server had closed (no answer began) is sent once
more on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import anyio

__all__ = ["MAX_HEAD", "Upstream", "UpstreamError", "UpstreamResponse", "read_head"]

log = logging.getLogger("llm_mcp.proxy")

MAX_HEAD = 64 << 10  # a response head (or one chunk-size or trailer line) longer than this is refused
READ_SIZE = 64 << 10
IDLE_SECONDS = 4.0  # llama-server (cpp-httplib) closes a connection idle for 5 s
_HEX = frozenset(b"0123456789abcdefABCDEF")
_CRLF, _TRAILERS = -1, -2  # chunked decoding: what comes next when no chunk data does
# every visible ASCII character stays as it is in a request target; the rest is percent-encoded
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


class UpstreamError(Exception):
    """The model's server could not be reached, or its answer broke the protocol or broke off."""


class _Stale(Exception):
    """A connection closed by the server before any byte of an answer: the request was not seen."""


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_SECONDS and not self.reader.at_eof()
                and self.reader.exception() is None and not self.writer.transport.is_closing())

    def close(self) -> None:
        self.writer.close()  # the server sees the connection end (mid-answer: it stops generating)


@dataclass(slots=True)
class _Place:
    """One model's server: its address and its idle connections."""

    endpoint: str
    host: str
    port: int
    authority: str  # for the Host header
    idle: deque[_Connection] = field(default_factory=deque)
    closed: bool = False
    max_idle: int = 0  # kept-alive connections at most (llama-server holds a thread for each)

    def take(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to be closed by now
            if conn.usable(now):
                return conn
            conn.close()
        return None

    def put(self, conn: _Connection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


class Upstream:
    """Requests to the models' servers over kept-alive connections, per model."""

    def __init__(self, *, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._places: dict[str, _Place] = {}

    async def request(self, model: str, endpoint: str, method: str, path: str, *,
                      headers: list[tuple[str, str]], body: bytes, max_idle: int = 8) -> UpstreamResponse:
        """Send a request to `endpoint` (http://HOST:PORT) and read the answer's head.

        `path` with its query string; `headers` as the client sent them, less what this adds
        (Host, Content-Length); `max_idle`: connections to keep open to this server between
        requests. The caller reads the body and then calls `release()`.
        """
        place = self._place(model, endpoint)
        place.max_idle = max_idle
        data = _request_bytes(method, path, place.authority, headers, body)
        conn = place.take()
        if conn is not None:
            try:
                return await _exchange(place, conn, data, method)
            except _Stale as exc:
                log.info("%s: %s on a reused connection; sending again", model, exc)
        conn = await self._connect(place)
        try:
            return await _exchange(place, conn, data, method)
        except _Stale as exc:
            raise UpstreamError(str(exc)) from None

    async def aclose(self) -> None:
        """Close every idle connection (those in use close with their answers)."""
        closing = [conn.writer for place in self._places.values() for conn in place.idle]
        for place in self._places.values():
            place.close()
        self._places.clear()
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            for writer in closing:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def _place(self, model: str, endpoint: str) -> _Place:
        place = self._places.get(model)
        if place is not None and place.endpoint == endpoint:
            return place
        if place is not None:  # the model moved (a new container, another port): the old ones are dead
            place.close()
        url = urlsplit(endpoint)
        try:
            port = url.port or 80
        except ValueError as exc:
            raise UpstreamError(f"bad endpoint {endpoint!r}: {exc}") from None
        if url.scheme != "http" or not url.hostname:
            raise UpstreamError(f"bad endpoint {endpoint!r}: only http://HOST:PORT is supported")
        place = _Place(endpoint, url.hostname, port, url.netloc)
        self._places[model] = place
        return place

    async def _connect(self, place: _Place) -> _Connection:
        try:
            with anyio.fail_after(self.connect_timeout):
                reader, writer = await asyncio.open_connection(place.host, place.port, limit=MAX_HEAD)
        except TimeoutError:
            raise UpstreamError(f"connecting to {place.endpoint} timed out after "
                                f"{self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"connecting to {place.endpoint} failed: {exc}") from None
        return _Connection(reader, writer)


def _request_bytes(method: str, path: str, authority: str, headers: list[tuple[str, str]],
                   body: bytes) -> bytes:
    lines = [f"{method} {quote(path, safe=_TARGET_SAFE)} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _exchange(place: _Place, conn: _Connection, data: bytes, method: str) -> UpstreamResponse:
    """Write the request and read the answer's head; the connection is closed on any failure."""
    try:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            head = await conn.reader.readuntil(b"\r\n\r\n")
            status, headers, keep_alive = read_head(head)
            while 100 <= status < 200 and status != 101:  # interim (100 Continue): the answer follows
                head = await conn.reader.readuntil(b"\r\n\r\n")
                status, headers, keep_alive = read_head(head)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale("the server closed the connection before answering") from None
            raise UpstreamError(f"the server closed the connection in its answer's head: "
                                f"{exc.partial[:200]!r}") from None
        except ConnectionError as exc:
            raise _Stale(f"{exc.__class__.__name__}: {exc}") from None
        except asyncio.LimitOverrunError:
            raise UpstreamError(f"the answer's head is longer than {MAX_HEAD} bytes") from None
        except OSError as exc:
            raise UpstreamError(f"{exc.__class__.__name__}: {exc}") from None
        return UpstreamResponse(status, headers, conn, place, keep_alive=keep_alive, method=method)
    except BaseException:
        conn.close()
        raise


def read_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    """An answer's status, headers (names lower case) and whether its connection may be kept,
    from its head (CRLF CRLF included)."""
    lines = head[:-4].split(b"\r\n") if head.endswith(b"\r\n\r\n") else [head]
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise UpstreamError(f"not an HTTP/1.x status line: {lines[0][:200]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise UpstreamError(f"a malformed header line: {line[:200]!r}")
        headers.append((name.lower(), value.strip()))
    keep_alive = version == b"HTTP/1.1" and not any(
        key == b"connection" and b"close" in (t.strip().lower() for t in value.split(b","))
        for key, value in headers)
    return int(code), headers, keep_alive


class UpstreamResponse:
    """An answer whose head was read; its body comes with `receive()` (raw bytes, b"" at its end)."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], conn: _Connection, place: _Place, *,
                 keep_alive: bool, method: str) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._place = place
        self._reader = conn.reader
        self._done = False
        self._left = 0  # chunked: of the current chunk (see _chunk); by length: of the body
        self._chunked = False
        self._buf = b""  # chunked: received and not yet decoded
        self._trailers = 0
        self._length: int | None = None  # None with _chunked False: the body ends when the server closes
        self._reusable = keep_alive
        self._released = False
        coding = self.header(b"transfer-encoding")
        length = self.header(b"content-length")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._done = True
        elif coding is not None:
            self._chunked = coding.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
            self._reusable = self._reusable and self._chunked
        elif length is not None:
            if not length.isdigit():  # the caller (_exchange) closes the connection
                raise UpstreamError(f"a bad Content-Length: {length[:100]!r}")
            self._length = self._left = int(length)
            self._done = self._left == 0
        else:
            self._reusable = False

    def header(self, name: bytes) -> bytes | None:
        """The first header of that (lower case) name."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def receive(self) -> bytes:
        """The next piece of the body as the server sent it (chunked transfer decoded); b"" at its end."""
        if self._done:
            return b""
        try:
            if self._chunked:
                return await self._chunk()
            data = await self._reader.read(READ_SIZE if self._length is None else min(self._left, READ_SIZE))
        except OSError as exc:
            raise UpstreamError(f"reading the answer failed: {exc.__class__.__name__}: {exc}") from None
        if self._length is None:
            self._done = not data
            return data
        if not data:
            raise UpstreamError(f"the server closed the connection {self._left} bytes before the end of "
                                f"its answer ({self._length} bytes)")
        self._left -= len(data)
        self._done = self._left == 0
        return data

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = []
        while data := await self.receive():
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back (the body was read to its end) or close it (it was not)."""
        if self._released:
            return
        self._released = True
        if self._done and self._reusable and not self._buf:
            self._place.put(self._conn)
        else:
            self._conn.close()

    async def _chunk(self) -> bytes:
        """The data of every chunk already received (at least one byte, or the end): chunks that came
        together are relayed together. `_left` > 0: data bytes left in the current chunk; then
        _CRLF (its line end), 0 (a chunk-size line) or _TRAILERS (after the last chunk).

        The buffer is walked with an index and cut once at the end: cutting it at every chunk
        copied the rest each time, quadratic in the chunks one read brings (hundreds, unpaced).
        """
        out: list[bytes] = []
        buf, pos = self._buf, 0
        while True:
            if self._left > 0:
                if pos == len(buf):
                    if out:
                        break
                    buf, pos = await self._more(), 0
                piece = buf[pos:pos + self._left]
                out.append(piece)
                pos += len(piece)
                self._left -= len(piece)
                if self._left == 0:
                    self._left = _CRLF
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_HEAD:
                    raise UpstreamError(f"a chunk-size or trailer line longer than {MAX_HEAD} bytes")
                if out:
                    break
                buf, pos = buf[pos:] + await self._more(), 0
                continue
            line, pos = buf[pos:end], end + 2
            if self._left == _CRLF:
                if line:
                    raise UpstreamError("a chunk not followed by CRLF")
                self._left = 0
            elif self._left == _TRAILERS:  # dropped
                self._trailers += len(line) + 2
                if self._trailers > MAX_HEAD:
                    raise UpstreamError(f"trailers longer than {MAX_HEAD} bytes")
                if not line:
                    self._done = True
                    break
            else:
                size = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
                if not size or len(size) > 16 or not _HEX.issuperset(size):
                    raise UpstreamError(f"a bad chunk-size line: {line[:100]!r}")
                self._left = int(size, 16) or _TRAILERS
        self._buf = buf[pos:]
        return b"".join(out) if len(out) != 1 else out[0]

    async def _more(self) -> bytes:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise UpstreamError("the server closed the connection in the middle of a chunk")
        return data
