"""The optional HTTP API for scripts: `llm-mcp daemon --http HOST:PORT` (docs/cli.md).

A small HTTP/1.1 server (h11 over an anyio TCP listener) in the daemon's own
event loop; every request becomes a `Daemon.dispatch` call, so HTTP sees exactly
what socket clients see. No authentication: loopback only unless the user
explicitly allows otherwise, the Host header must name the loopback host
(DNS rebinding), a request a browser makes for another site (an Origin other
than this API's, or Sec-Fetch-Site cross-site) is refused for every method,
GETs included, and POST bodies must be JSON (no cross-site form posts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import h11

from llm_mcp import __version__, protocol
from llm_mcp.config.binds import is_loopback, parse_bind
from llm_mcp.daemon.listeners import serve_forever
from llm_mcp.protocol import ProtocolError
from llm_mcp.util.failure_lines import relevant_first

if TYPE_CHECKING:
    from llm_mcp.daemon.server import Daemon

log = logging.getLogger("llm_mcp.http")
__all__ = ["ENDPOINTS", "is_loopback", "parse_bind", "serve_http"]

MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT = 60.0
DEFAULT_SWITCH_TIMEOUT = 900.0
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ENDPOINTS = ("GET /models", "GET /status", "POST /switch", "GET /logs", "GET /jobs/ID", "POST /stop")

_STATUS_FOR_CODE = {
    protocol.PARSE_ERROR: 400,
    protocol.INVALID_REQUEST: 400,
    protocol.INVALID_PARAMS: 400,
    protocol.METHOD_NOT_FOUND: 404,
    protocol.UNKNOWN_MODEL: 404,
    protocol.NOT_FOUND: 404,
    protocol.BUSY: 409,
    protocol.WONT_FIT: 507,  # Insufficient Storage: the model does not fit in memory; nothing stopped
    protocol.CONFIG_ERROR: 500,
    protocol.PROTOCOL_MISMATCH: 500,
    protocol.INTERNAL_ERROR: 500,
    protocol.DOCKER_UNAVAILABLE: 503,
}
_REASON_FOR_STATUS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "busy",
                      413: "too_large", 415: "unsupported_media_type", 500: "internal_error"}


async def serve_http(daemon: Daemon, host: str, port: int, *,
                     task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; `task_status.started(port)` reports the bound port (for port 0)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound = int(listener.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 - not Django
    check_host = is_loopback(host)
    shown = f"[{host}]" if ":" in host else host
    log.info("HTTP API on http://%s:%d", shown, bound)
    task_status.started(bound)
    async with listener:
        await serve_forever(listener, partial(_connection, daemon, check_host))


# ---- one connection --------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        self.status = status
        self.body: dict[str, Any] = {"error": {"status": status, "reason": reason, "message": message,
                                               **{k: v for k, v in extra.items() if k != "job"}}}
        if "job" in extra:
            self.body["job"] = extra["job"]
        super().__init__(message)


async def _connection(daemon: Daemon, check_host: bool, stream: anyio.abc.ByteStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            try:
                request, body = await _read_request(conn, stream)
            except _HttpError as exc:
                await _send(conn, stream, exc.status, exc.body, close=True)
                return
            if request is None:
                return
            status, payload, headers = await _respond(daemon, check_host, request, body)
            await _send(conn, stream, status, payload, headers)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await _quiet(_send(conn, stream, exc.error_status_hint,
                               _HttpError(exc.error_status_hint, "bad_request", str(exc)).body, close=True))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, TimeoutError, OSError):
        pass
    finally:
        await _quiet(stream.aclose())


async def _next_event(conn: h11.Connection, stream: anyio.abc.ByteStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with anyio.fail_after(IDLE_TIMEOUT):
            try:
                data = await stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
        conn.receive_data(data)


async def _read_request(conn: h11.Connection,
                        stream: anyio.abc.ByteStream) -> tuple[h11.Request | None, bytes]:
    event = await _next_event(conn, stream)
    if not isinstance(event, h11.Request):
        return None, b""  # ConnectionClosed
    body = bytearray()
    while True:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY_BYTES:
                raise _HttpError(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
        elif isinstance(part, h11.EndOfMessage):
            return event, bytes(body)
        else:
            return None, b""


async def _send(conn: h11.Connection, stream: anyio.abc.ByteStream, status: int, payload: Any,
                headers: list[tuple[str, str]] | None = None, *, close: bool = False) -> None:
    data = json.dumps(payload, default=str).encode() + b"\n"
    all_headers = [("content-type", "application/json"), ("content-length", str(len(data))),
                   ("cache-control", "no-store"), ("server", f"llm-mcp/{__version__}"), *(headers or [])]
    if close:
        all_headers.append(("connection", "close"))
    phrase = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""
    await stream.send(conn.send(h11.Response(status_code=status, headers=all_headers, reason=phrase)))
    await stream.send(conn.send(h11.Data(data=data)))
    await stream.send(conn.send(h11.EndOfMessage()))


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Exception):  # the peer is gone; nothing to tell it
        await awaitable


# ---- routing ----------------------------------------------------------------------


async def _respond(daemon: Daemon, check_host: bool, request: h11.Request,
                   body: bytes) -> tuple[int, Any, list[tuple[str, str]]]:
    method = request.method.decode("ascii", "replace").upper()
    target = request.target.decode("ascii", "replace")
    path, _, query = target.partition("?")
    path = path.rstrip("/") or "/"
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
    try:
        if check_host and not _loopback_host_header(headers.get("host", "")):
            raise _HttpError(403, "forbidden_host", "the Host header must name the loopback address "
                             "this API listens on (DNS rebinding protection)")
        if foreign := _cross_site(headers):
            raise _HttpError(403, "forbidden_origin", f"{foreign}: requests from web pages of other "
                             "sites are refused (scripts and curl send no Origin header)")
        allowed, handler = _route(path)
        if handler is None:
            raise _HttpError(404, "not_found", f"no endpoint {path}; endpoints: {', '.join(ENDPOINTS)}")
        if method not in allowed:
            exc = _HttpError(405, "method_not_allowed", f"{path} accepts {', '.join(allowed)}")
            return exc.status, exc.body, [("allow", ", ".join(allowed))]
        if method == "POST" and not headers.get("content-type", "").lower().startswith("application/json"):
            raise _HttpError(415, "unsupported_media_type", "POST bodies must be JSON with the header "
                             "Content-Type: application/json (curl --json '{...}')")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        status, payload = await handler(daemon, params, body)
        return status, payload, []
    except _HttpError as exc:
        return exc.status, exc.body, []
    except ProtocolError as exc:
        status = _STATUS_FOR_CODE.get(exc.code, 500)
        data = dict(exc.data)
        if exc.code == protocol.UNKNOWN_MODEL:
            data["hint"] = "GET /models lists the valid ids"  # the socket's hint names an MCP tool
        reason = str(data.pop("reason", "") or _REASON_FOR_STATUS.get(status, "error"))
        err = _HttpError(status, reason, exc.message, **data)
        return err.status, err.body, []
    except Exception as exc:
        log.exception("HTTP %s %s failed", method, path)
        err = _HttpError(500, "internal_error", f"internal error: {exc}", hint="see the daemon log")
        return err.status, err.body, []


def _cross_site(headers: dict[str, str]) -> str | None:
    """Why a request comes from another site's page, or None.

    Browsers send Origin with cross-origin fetches and with every POST, and
    Sec-Fetch-Site with everything (an <img> GET included). Same-origin means
    the Origin names the host this request is addressed to.
    """
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    parsed = urllib.parse.urlsplit(origin.strip())
    if parsed.scheme in ("http", "https") and parsed.netloc and \
            parsed.netloc.lower() == headers.get("host", "").strip().lower():
        return None
    return f"Origin {origin[:200]!r} is not this API"


def _loopback_host_header(host: str) -> bool:
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES


def _route(path: str) -> tuple[tuple[str, ...], Any]:
    if path.startswith("/jobs/") and path.count("/") == 2:
        return ("GET",), partial(_get_job, urllib.parse.unquote(path.split("/")[2]))
    return {
        "/models": (("GET",), _get_models),
        "/status": (("GET",), _get_status),
        "/logs": (("GET",), _get_logs),
        "/switch": (("POST",), _post_switch),
        "/stop": (("POST",), _post_stop),
    }.get(path, ((), None))


def _json_object(body: bytes, valid: tuple[str, ...]) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _HttpError(400, "bad_json", "the body must be a JSON object")
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise _HttpError(400, "bad_request",
                         f"unknown field(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return value


def _query_int(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _HttpError(400, "bad_request", f"query parameter {name} must be a whole number") from None
    if not low <= value <= high:
        raise _HttpError(400, "bad_request", f"query parameter {name} must be {low}..{high}")
    return value


async def _get_models(daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    return 200, await daemon.dispatch("list_models", {})


async def _get_status(daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    return 200, await daemon.dispatch("status", {})


async def _get_logs(daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    call: dict[str, Any] = {"lines": _query_int(params, "n", 100, 0, 10000)}
    for name in ("filter", "run"):
        if params.get(name):
            call[name] = params[name][-1]
    return 200, await daemon.dispatch("tail_logs", call)


async def _get_job(job_id: str, daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    return 200, await daemon.dispatch("job", {"id": job_id})


async def _post_switch(daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    request = _json_object(body, ("model", "force", "rollback", "timeout"))
    if not isinstance(request.get("model"), str):
        raise _HttpError(400, "bad_request", 'the body needs "model": a profile id (GET /models lists them)')
    timeout = request.pop("timeout", DEFAULT_SWITCH_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not 0 < timeout <= protocol.MAX_SECONDS:
        raise _HttpError(400, "bad_request", '"timeout" must be a number of seconds, more than 0 and at '
                         f"most {protocol.MAX_SECONDS:g}")
    job = await daemon.dispatch("switch", {**request, "wait": False})
    if not job["done"]:
        job = await daemon.dispatch("job", {"id": job["id"], "wait": True, "timeout": timeout})
    return _job_outcome(job, timeout)


async def _post_stop(daemon: Daemon, params: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
    request = _json_object(body, ("force", "timeout"))
    timeout = request.pop("timeout", 120)
    job = await daemon.dispatch("stop", {**request, "wait": True, "timeout": timeout})
    return _job_outcome(job, timeout)


def _job_outcome(job: dict[str, Any], timeout: float) -> tuple[int, Any]:
    result = job.get("result")
    if result in ("ready", "stopped"):
        return 200, job
    if not job.get("done"):
        raise _HttpError(504, "timeout", f"not finished after {timeout:g}s ({job.get('phase')}); the job "
                         "goes on in the daemon", hint=f"poll GET /jobs/{job['id']} or GET /status", job=job)
    if result == "cancelled":
        raise _HttpError(409, "cancelled", f"the job was cancelled: {job.get('detail')}",
                         hint="another client forced a different switch", job=job)
    reason = str(job.get("reason") or "failed")
    status = 503 if reason == "docker_unavailable" else 422
    raise _HttpError(status, reason, str(job.get("message") or job.get("detail") or "the switch failed"),
                     hint=job.get("hint"), restored=job.get("restored"),
                     log_lines=relevant_first(job.get("log_lines") or []), job=job)  # why first
