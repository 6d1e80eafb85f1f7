"""One request relayed to a model's server, as an ASGI response.

It waits for the model's load (optionally streaming `: loading ...` SSE comments,
which the OpenAI and Anthropic SDKs skip), counts itself in flight with the
scheduler (which then drains it before stopping the model), relays the answer
(SSE as it comes, anything else whole, errors unchanged), ends a stream whose model
was stopped under it with an error event in the API's format, and closes the
upstream request as soon as the client goes away, so llama-server frees the slot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_mcp.daemon.proxy_errors import Api, ProxyError, error_event
from llm_mcp.daemon.proxy_gate import Target
from llm_mcp.daemon.upstream_http import UpstreamError, UpstreamResponse

if TYPE_CHECKING:
    from llm_mcp.core.jobs import Job
    from llm_mcp.daemon.proxy import Proxy

__all__ = ["Forward", "Outgoing"]

log = logging.getLogger("llm_mcp.proxy")

# Not forwarded either way: hop-by-hop, what upstream_http/uvicorn set themselves, the client's keys,
# and llama-server's CORS allowances (the endpoint answers no web page of another site).
_DROP_REQUEST = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length",
                           "authorization", "x-api-key", "accept-encoding", "te", "upgrade",
                           "proxy-authorization", "cookie", "expect", "x-llm-mcp-loading-state"})
_DROP_RESPONSE = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server",
                            b"date", b"content-encoding"})
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
MAX_TIMINGS_BODY = 4 << 20  # a non-streamed answer larger than this is relayed without reading timings
MAX_PENDING = 1 << 20  # an event longer than this is relayed in pieces


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the client asked for, already read and checked."""

    api: Api
    route: str  # for metrics: chat, completions, embeddings, messages, upstream
    target: Target
    method: str
    path: str  # on the model's server, with the query string
    body: bytes
    headers: list[tuple[str, str]]
    loading_state: bool  # stream the load's progress as SSE comments (a streaming request opted in)


class Forward(Response):
    def __init__(self, proxy: Proxy, out: Outgoing) -> None:
        super().__init__(b"")
        self.proxy = proxy
        self.out = out
        self.started = False  # the response head went out
        self.ended = False
        self.gone = False  # the client hung up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
            try:
                await self._run(send)
            except anyio.get_cancelled_exc_class():
                if not self.gone:  # the daemon stops (uvicorn cancels what outlives its grace)
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                        await self._fail(send, ProxyError(503, "daemon_stopping", "the daemon stopped "
                                                          "before this request finished", retry=True))
                raise
            except Exception as exc:  # a bug: the client still gets an answer in its API's format
                log.exception("relaying %s %s to %s failed", self.out.method, self.out.path,
                              self.out.target.model)
                await self._fail(send, ProxyError(500, "internal_error", f"internal error: {exc}",
                                                  hint="see the daemon log", retry=False))
            finally:
                if not self.ended:  # else the watcher returns by itself: the server ends receive()
                    tg.cancel_scope.cancel()

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # after the answer's last byte the server answers receive() with a disconnect too
                if not self.ended:
                    self.gone = True
                    scope.cancel()  # the upstream request is closed on the way out
                return

    # ---- waiting for the model ------------------------------------------------------------

    async def _run(self, send: Send) -> None:
        out, proxy = self.out, self.proxy
        model = out.target.model
        proxy.metrics.request(model, out.route)
        began = time.monotonic()
        progress = None
        if out.loading_state and proxy.gate.ready_endpoint(model) is None:
            await self._start(send, 200, SSE_HEADERS)

            async def progress(job: Job | None, waited: float) -> None:
                await send({"type": "http.response.body", "body": _loading_line(model, job, waited),
                            "more_body": True})

        try:
            endpoint = await proxy.gate.wait_ready(out.target, progress)
        except ProxyError as exc:
            await self._fail(send, exc)
            return
        waited = time.monotonic() - began
        if waited > 0.01:
            proxy.metrics.waited(model, waited)
        # no await between the ready check and this: the scheduler sees the request before it stops the model
        with proxy.core.requests.serving(model) as ticket, anyio.CancelScope() as relay:
            ticket.on_cut = relay.cancel
            try:
                await self._relay(send, endpoint)
            except ProxyError as exc:
                await self._fail(send, exc)
        if ticket.cut.is_set() and not self.ended:
            await self._fail(send, ProxyError(503, "model_stopped", ticket.cut_reason or
                                              f"'{model}' was stopped while answering", retry=True))

    # ---- relaying ---------------------------------------------------------------------------

    async def _relay(self, send: Send, endpoint: str) -> None:
        out, proxy = self.out, self.proxy
        model = out.target.model
        headers = [(k, v) for k, v in out.headers if k not in _DROP_REQUEST]
        sent_at = time.monotonic()
        try:
            response = await proxy.upstream.request(model, endpoint, out.method, out.path, headers=headers,
                                                    body=out.body, max_idle=out.target.idle_limit)
        except UpstreamError as exc:
            raise ProxyError(502, "upstream_unreachable", f"the server of '{model}' did not answer: {exc}",
                             hint="GET /v1/models shows its state; the daemon log says more",
                             retry=True) from None
        try:
            streamed = (response.header(b"content-type") or b"").startswith(b"text/event-stream")
            if response.status >= 400:
                proxy.metrics.error(model, f"upstream_{response.status}")
            if streamed and response.status == 200:
                await self._relay_stream(send, response, sent_at)
            else:
                await self._relay_whole(send, response)
        except UpstreamError as exc:
            raise ProxyError(502, "upstream_failed", f"the server of '{model}' broke off its answer: {exc}",
                             retry=not self.started) from None
        finally:
            response.release()  # mid-answer: closes the connection, llama-server stops generating

    async def _relay_stream(self, send: Send, response: UpstreamResponse, sent_at: float) -> None:
        model = self.out.target.model
        if not self.started:
            await self._start(send, 200, _response_headers(response))
        timings = _TimingsReader()
        first = True
        pending = b""  # relayed by whole events: an error event after a cut must not land mid-event
        # llama-server (b11434) leaves out an Anthropic stream's message_start now and then (about 1 in
        # 8 seen); the Anthropic SDK's stream helper cannot build the message without it
        needs_start = self.out.path.split("?", 1)[0] == "/v1/messages"
        while chunk := await response.receive():
            if first:
                self.proxy.metrics.first_token(model, time.monotonic() - sent_at)
                first = False
            timings.feed(chunk)
            pending += chunk
            end = pending.rfind(b"\n\n") + 2 if len(pending) < MAX_PENDING else len(pending)
            if end >= 2:
                events = pending[:end]
                if needs_start:
                    needs_start = False
                    if not events.startswith(b"event: message_start"):
                        log.info("llama-server's stream for %s began without message_start: added", model)
                        events = _message_start(model) + events
                await send({"type": "http.response.body", "body": events, "more_body": True})
                pending = pending[end:]
        if pending:
            await send({"type": "http.response.body", "body": pending, "more_body": True})
        self.proxy.metrics.timings(model, timings.last)
        await self._end(send)

    async def _relay_whole(self, send: Send, response: UpstreamResponse) -> None:
        data = await response.read()
        if self.started:  # a loading-state stream, answered without a stream: the body as an error event
            try:
                body = json.loads(data)
            except ValueError:
                body = None
            if not isinstance(body, dict) or "error" not in body:
                body = ProxyError(502, "upstream_not_streamed", f"the model's server answered "
                                  f"{response.status} without a stream: {data[:500]!r}"
                                  ).body(self.out.api)
            await send({"type": "http.response.body", "body": error_event(self.out.api, body),
                        "more_body": True})
            await self._end(send)
            return
        if response.status == 200 and len(data) <= MAX_TIMINGS_BODY and b'"timings"' in data:
            with contextlib.suppress(ValueError, AttributeError):
                self.proxy.metrics.timings(self.out.target.model, json.loads(data).get("timings"))
        headers = [*_response_headers(response), (b"content-length", str(len(data)).encode())]
        await self._start(send, response.status, headers)
        await send({"type": "http.response.body", "body": data, "more_body": False})
        self.ended = True

    # ---- the response's own steps ---------------------------------------------------------

    async def _start(self, send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _end(self, send: Send) -> None:
        self.ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _fail(self, send: Send, exc: ProxyError) -> None:
        self.proxy.metrics.error(self.out.target.model, exc.reason)
        if self.ended:
            return
        if self.started:
            await send({"type": "http.response.body", "body": exc.event(self.out.api), "more_body": True})
            await self._end(send)
            return
        response = exc.response(self.out.api)
        await self._start(send, response.status_code, response.raw_headers)
        await send({"type": "http.response.body", "body": response.body, "more_body": False})
        self.ended = True


def _response_headers(response: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.headers  # names are lower case
            if k not in _DROP_RESPONSE and not k.startswith(b"access-control-")]


def _message_start(model: str) -> bytes:
    """The first event of an Anthropic Messages stream, as llama-server writes it (usage unknown: 0)."""
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "content": [],
        "model": model, "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}
    data = json.dumps({"type": "message_start", "message": message}, separators=(",", ":"))
    return f"event: message_start\ndata: {data}\n\n".encode()


def _loading_line(model: str, job: Job | None, waited: float) -> bytes:
    """An SSE comment: both SDKs skip lines that start with ':'."""
    if job is None:
        return f": loading {model} ({waited:.0f} s)\n\n".encode()
    fraction = job.progress()
    share = f" {round(fraction * 100)}%" if fraction is not None else ""
    return f": loading {model}{share} ({job.phase}, {waited:.0f} s)\n\n".encode()


class _TimingsReader:
    """Finds llama-server's `timings` in a stream's events (the last chunk carries them)."""

    def __init__(self) -> None:
        self._tail = b""
        self.last: Any = None

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        if b'"timings"' not in data:  # every chunk but the last: only an unfinished line is kept
            self._tail = data[data.rfind(b"\n") + 1:][-MAX_TIMINGS_BODY:]
            return
        lines = data.split(b"\n")
        self._tail = lines.pop()[-MAX_TIMINGS_BODY:]
        for line in lines:
            if line.startswith(b"data:") and b'"timings"' in line:
                with contextlib.suppress(ValueError, AttributeError):
                    self.last = json.loads(line[5:]).get("timings")
