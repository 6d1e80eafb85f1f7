"""An ASGI app served by uvicorn inside the daemon's own event loop, as one task of its task group.

The daemon owns the process: its signals (uvicorn would replace the SIGTERM and
SIGINT handlers for as long as it serves), its logging (uvicorn's loggers only
propagate to daemon.log) and its life (cancelling this task stops the server
within a fraction of a second; requests still running get `GRACE` seconds).
The socket is bound here, before `task_status.started(port)`, so the caller
learns the port (for port 0) or gets the OSError ("address in use") itself.
HTTP/1.1 is parsed by httptools (a dependency; h11 without it): a relayed chunk costs
the endpoint about a fifth less CPU (docs/proxy.md "Performance"). uvicorn bounds a
request's head under h11 only; under httptools it keeps every header a client sends
(200 MiB of them grew the process by 111 MiB), so `BoundedHead` adds the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import anyio
import anyio.abc
import uvicorn
from starlette.types import ASGIApp

from llm_mcp import __version__

__all__ = ["GRACE", "IDLE_TIMEOUT", "MAX_HEAD", "serve_asgi"]

log = logging.getLogger("llm_mcp.http")

IDLE_TIMEOUT = 60  # seconds a keep-alive connection may sit idle
MAX_HEAD = 64 << 10  # bytes of a request's line and headers; more: 431 and the connection closed
BACKLOG = 128
GRACE = 1  # second(s) requests in flight get to finish when the daemon stops


class _Server(uvicorn.Server):
    """uvicorn's Server less what the daemon does itself: signals, and polling for the stop at 10 Hz."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = anyio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's own handlers stay: it decides when the server stops

    async def main_loop(self) -> None:
        # uvicorn ticks every 0.1 s to refresh the Date header and look at should_exit; with no
        # Date header and stop() waking it, one tick (the default headers) and a wait do (0 wakeups idle)
        await self.on_tick(0)
        await self._stopping.wait()


def _http_protocol() -> type[asyncio.Protocol] | str:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: h11, bounded by h11_max_incomplete_event_size below
        return "h11"

    class BoundedHead(HttpToolsProtocol):
        """uvicorn's httptools protocol with a bound on the request head, as h11 has.

        Counts the bytes that arrive while a head is unfinished (httptools gathers a header
        line, however long, before it hands it over); over MAX_HEAD the client gets a 431
        and the connection is closed. What one read brings past the bound is the most kept.
        """

        _head = 0
        _in_head = True

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._in_head, self._head = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head = True, 0  # a kept-alive connection: the next head

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head += len(data)
            super().data_received(data)
            if self._in_head and self._head > MAX_HEAD and not self.transport.is_closing():
                text = f"request head over {MAX_HEAD} bytes".encode()
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                     b"content-type: text/plain; charset=utf-8\r\n"
                                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text))
                self.transport.close()

    return BoundedHead


async def serve_asgi(app: ASGIApp, host: str, port: int, *, name: str = "HTTP",
                     task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on host:port until cancelled; `task_status.started(port)` gives the bound port."""
    sockets = await _bind(host, port)
    bound = int(sockets[0].getsockname()[1])
    try:
        server = _Server(uvicorn.Config(
            app, http=_http_protocol(), ws="none", lifespan="off", interface="asgi3",
            h11_max_incomplete_event_size=MAX_HEAD,
            log_config=None, log_level="warning", access_log=False,  # the daemon's logging, untouched
            proxy_headers=False, server_header=False, date_header=False,
            headers=[("server", f"llm-mcp/{__version__}")],
            timeout_keep_alive=IDLE_TIMEOUT, timeout_graceful_shutdown=GRACE, backlog=BACKLOG))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    shield = anyio.CancelScope(shield=True)  # uvicorn shuts down by itself once stopped
    ended = anyio.Event()

    async def run() -> None:
        try:
            with shield:
                await server.serve(sockets=sockets)
        except Exception:
            log.exception("the HTTP server failed; the daemon goes on without it")
        finally:
            for sock in sockets:
                sock.close()
            ended.set()

    log.info("%s on http://%s:%d", name, f"[{host}]" if ":" in host else host, bound)
    task_status.started(bound)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            await ended.wait()
        finally:
            server.stop()
            shield.deadline = anyio.current_time() + GRACE + 1  # uvicorn's own grace, then a hard stop


async def _bind(host: str, port: int) -> list[socket.socket]:
    """A listening socket per address `host` resolves to ("localhost": IPv4 and IPv6), one port for all.

    Created with proto=IPPROTO_TCP: asyncio turns Nagle off only on connections of such sockets
    (anyio's listeners have proto 0), and uvicorn writes a reply's head and body separately:
    with Nagle on, the body waits for the client's delayed ACK, 40 ms a request.
    """
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG)
    sockets: list[socket.socket] = []
    try:
        for family, *_, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # port 0: the others take the port the first one got
            sock.bind(sockaddr if len(sockets) == 1 else
                      (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:]))
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
