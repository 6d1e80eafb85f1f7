"""The optional HTTP API for scripts: `llm-mcp daemon --http HOST:PORT` (docs/cli.md).

A Starlette app served by uvicorn in the daemon's own event loop (asgi_server);
every request becomes a `dispatch` call into the daemon's method table, so HTTP
sees exactly what socket clients see. No authentication: loopback only unless
the user explicitly allows otherwise, and asgi_guard refuses what a web page or
a rebound DNS name could send before any route runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.abc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_mcp import protocol
from llm_mcp.config.binds import is_loopback, parse_bind
from llm_mcp.daemon.asgi_guard import LocalOnly, error_body, error_reply, json_reply
from llm_mcp.daemon.asgi_server import serve_asgi
from llm_mcp.protocol import ProtocolError
from llm_mcp.runtime.failure_lines import relevant_first

log = logging.getLogger("llm_mcp.http")
__all__ = ["ENDPOINTS", "build_app", "is_loopback", "parse_bind", "serve_http"]

DEFAULT_SWITCH_TIMEOUT = 900.0
DEFAULT_STOP_TIMEOUT = 120.0
ENDPOINTS = ("GET /models", "GET /status", "POST /switch", "POST /unload", "POST /stop", "GET /logs",
             "GET /jobs/ID")

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
}
_REASON_FOR_STATUS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "busy",
                      413: "too_large", 415: "unsupported_media_type", 500: "internal_error"}


class Dispatcher(Protocol):
    """The daemon as the HTTP API sees it: its method table (server.Daemon.dispatch)."""

    def dispatch(self, method: str, params: dict[str, Any]) -> Awaitable[Any]: ...


async def serve_http(daemon: Dispatcher, host: str, port: int, *,
                     task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; `task_status.started(port)` reports the bound port (for port 0).

    An OSError (the address is in use, say) is raised before `started`.
    """
    app = build_app(daemon, check_host=is_loopback(host))
    await serve_asgi(app, host, port, name="HTTP API", task_status=task_status)


def build_app(daemon: Dispatcher, *, check_host: bool) -> ASGIApp:
    """The HTTP API as an ASGI app (`check_host`: the Host header must be a loopback name)."""

    def route(path: str, method: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _answer(daemon, handler, request)

        return Route(path, endpoint, methods=[method])

    app = Starlette(
        routes=[route("/models", "GET", _get_models), route("/status", "GET", _get_status),
                route("/logs", "GET", _get_logs), route("/jobs/{id}", "GET", _get_job),
                route("/switch", "POST", _post_switch), route("/unload", "POST", _post_unload),
                route("/stop", "POST", _post_stop)],
        middleware=[Middleware(LocalOnly, check_host=check_host)],
        exception_handlers={HTTPException: _http_exception})
    return _without_trailing_slash(app)


def _without_trailing_slash(app: ASGIApp) -> ASGIApp:
    # "/status/" is "/status" (as before), answered, not redirected: curl does not follow by default
    async def normalised(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        await app(scope, receive, send)

    return normalised


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method, body too large) in the API's error format."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return error_reply(404, "not_found", f"no endpoint {path}; endpoints: {', '.join(ENDPOINTS)}")
    if exc.status_code == 405:
        allow = ", ".join(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")))
        return error_reply(405, "method_not_allowed", f"{path} accepts {allow}", headers={"allow": allow})
    return error_reply(exc.status_code, _REASON_FOR_STATUS.get(exc.status_code, "error"), exc.detail,
                       headers=dict(exc.headers or {}))


# ---- one request -------------------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        self.status = status
        self.body = error_body(status, reason, message, **extra)
        super().__init__(message)


Handler = Callable[[Dispatcher, Request], Awaitable[tuple[int, Any]]]


async def _answer(daemon: Dispatcher, handler: Handler, request: Request) -> Response:
    try:
        status, payload = await handler(daemon, request)
        return json_reply(status, payload)
    except _HttpError as exc:
        return json_reply(exc.status, exc.body)
    except HTTPException:
        raise  # the body limit (asgi_guard): answered by the app's HTTPException handler
    except anyio.get_cancelled_exc_class():
        # uvicorn cancels what still runs GRACE seconds after the daemon began to stop; this
        # request's own task, so an answer instead of a 500 (or a cut) ends it as well
        return json_reply(503, _HttpError(503, "daemon_stopping", "the daemon stopped before this request "
                                          "finished", hint="GET /status once a daemon serves again").body)
    except ProtocolError as exc:
        status = _STATUS_FOR_CODE.get(exc.code, 500)
        data = dict(exc.data)
        if exc.code == protocol.UNKNOWN_MODEL:
            data["hint"] = "GET /models lists the valid ids"  # the socket's hint names an MCP tool
        reason = str(data.pop("reason", "") or _REASON_FOR_STATUS.get(status, "error"))
        return json_reply(status, _HttpError(status, reason, exc.message, **data).body)
    except Exception as exc:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return json_reply(500, _HttpError(500, "internal_error", f"internal error: {exc}",
                                          hint="see the daemon log").body)


async def _json_object(request: Request, valid: tuple[str, ...]) -> dict[str, Any]:
    body = await request.body()
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


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    values = request.query_params.getlist(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _HttpError(400, "bad_request", f"query parameter {name} must be a whole number") from None
    if not low <= value <= high:
        raise _HttpError(400, "bad_request", f"query parameter {name} must be {low}..{high}")
    return value


def _timeout(request: dict[str, Any], default: float) -> float:
    timeout = request.pop("timeout", default)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
            not 0 < timeout <= protocol.MAX_SECONDS:
        raise _HttpError(400, "bad_request", '"timeout" must be a number of seconds, more than 0 and at '
                         f"most {protocol.MAX_SECONDS:g}")
    return float(timeout)


def _model(request: dict[str, Any]) -> None:
    if not isinstance(request.get("model"), str):
        raise _HttpError(400, "bad_request", 'the body needs "model": a profile id (GET /models lists them)')


# ---- the routes ----------------------------------------------------------------------------


async def _get_models(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    return 200, await daemon.dispatch("list_models", {})


async def _get_status(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    return 200, await daemon.dispatch("status", {})


async def _get_logs(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    call: dict[str, Any] = {"lines": _query_int(request, "n", 100, 0, 10000)}
    for name in ("filter", "run", "model"):
        if values := request.query_params.getlist(name):
            call[name] = values[-1]
    return 200, await daemon.dispatch("tail_logs", call)


async def _get_job(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    return 200, await daemon.dispatch("job", {"id": request.path_params["id"]})


async def _post_switch(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    body = await _json_object(request, ("model", "force", "rollback", "timeout"))
    _model(body)
    timeout = _timeout(body, DEFAULT_SWITCH_TIMEOUT)
    job = await daemon.dispatch("switch", {**body, "wait": False})
    if not job["done"]:
        job = await daemon.dispatch("job", {"id": job["id"], "wait": True, "timeout": timeout})
    return _job_outcome(job, timeout)


async def _post_unload(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    body = await _json_object(request, ("model", "force", "timeout"))
    _model(body)
    timeout = _timeout(body, DEFAULT_STOP_TIMEOUT)
    return _job_outcome(await daemon.dispatch("unload", {**body, "wait": True, "timeout": timeout}), timeout)


async def _post_stop(daemon: Dispatcher, request: Request) -> tuple[int, Any]:
    body = await _json_object(request, ("force", "timeout"))
    timeout = _timeout(body, DEFAULT_STOP_TIMEOUT)
    return _job_outcome(await daemon.dispatch("stop", {**body, "wait": True, "timeout": timeout}), timeout)


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
    raise _HttpError(status, reason, str(job.get("message") or job.get("detail") or f"the {job.get('kind')} "
                     "failed"), hint=job.get("hint"), restored=job.get("restored"),
                     log_lines=relevant_first(job.get("log_lines") or []), job=job)  # why first
