"""The daemon's OpenAI- and Anthropic-compatible endpoint (docs/proxy.md).

One address for every model: the `model` field (a profile id or alias) picks the
profile; a model that is not ready is loaded on demand while the request waits
(proxy_gate); the answer is relayed from the model's llama-server (proxy_stream).
Routes: GET /v1/models, POST /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/messages (Anthropic; llama-server answers it natively), any method under
/upstream/MODEL/... (the rest of llama-server's API), GET /metrics, GET /health.
Served by uvicorn in the daemon's loop (asgi_server) behind asgi_guard (Host, Origin,
body bound) and the API keys of [proxy] (proxy_auth). Nothing here reaches Docker or
files: a request can only ensure a profile models.conf defines and talk to its server.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Protocol

import anyio
import anyio.abc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_mcp.config.binds import is_loopback
from llm_mcp.config.proxy_conf import ProxySettings
from llm_mcp.daemon.asgi_guard import LocalOnly, json_reply
from llm_mcp.daemon.asgi_server import serve_asgi
from llm_mcp.daemon.metrics import Metrics
from llm_mcp.daemon.proxy_auth import Keys
from llm_mcp.daemon.proxy_errors import ProxyError, api_of, guard_refusal
from llm_mcp.daemon.proxy_gate import Gate, Scheduler
from llm_mcp.daemon.proxy_stream import Forward, Outgoing
from llm_mcp.daemon.upstream_http import Upstream

__all__ = ["LOADING_HEADER", "Proxy", "build_app", "serve_proxy"]

log = logging.getLogger("llm_mcp.proxy")

LOADING_HEADER = "x-llm-mcp-loading-state"
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings",
          "/v1/messages": "messages", "/v1/messages/count_tokens": "messages"}
# Only connecting is bounded: generations take as long as they take, and a model that stops
# under one is noticed by the scheduler.
UPSTREAM_CONNECT_TIMEOUT = 10.0
GPU_SAMPLE_TIMEOUT = 2.0  # NVML answers in milliseconds; a hung driver must not hang /metrics


class DaemonLike(Protocol):
    """What the endpoint needs of server.Daemon."""

    core: Any  # core.scheduler.Core
    samplers: Any  # server.Samplers | None: `last_gpu`


class Proxy:
    """The endpoint's state: its scheduler, settings, keys, metrics and upstream connections."""

    def __init__(self, core: Scheduler, *, samplers: Any = None, bus: Any = None) -> None:
        self.core = core
        self.samplers = samplers
        self.bus = bus
        self.gate = Gate(core, self.settings)
        self._settings = ProxySettings()
        self.settings()
        self.keys = Keys()
        self.metrics = Metrics()
        self.upstream = Upstream(connect_timeout=UPSTREAM_CONNECT_TIMEOUT)

    def settings(self) -> ProxySettings:
        """[proxy] as models.conf says now (keys, queue sizes count at once); the last good one
        while models.conf does not parse."""
        with contextlib.suppress(ProxyError):  # a broken models.conf: the last good settings stay
            self._settings = self.gate.config().proxy
        return self._settings

    async def follow_jobs(self) -> None:
        """Count every load (whoever asked for it) in the metrics, from the scheduler's job events."""
        if self.bus is None:
            return
        sub = self.bus.subscribe(["job"])
        try:
            while batch := await sub.next_batch():
                for event in batch:
                    self.metrics.job(event.get("data") or {})
        finally:
            self.bus.unsubscribe(sub)

    async def aclose(self) -> None:
        await self.upstream.aclose()


async def serve_proxy(daemon: DaemonLike, host: str, port: int, *,
                      task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve the endpoint until cancelled; `task_status.started(port)` gives the bound port.

    The daemon starts it like the HTTP API: `port = await tg.start(serve_proxy, daemon, host, port)`
    with host and port from models.conf's [proxy] listen. An OSError (address in use) comes before
    `started`.
    """
    proxy = Proxy(daemon.core, samplers=daemon.samplers, bus=daemon.core.bus)
    app = build_app(proxy, check_host=is_loopback(host))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(proxy.follow_jobs)
            await serve_asgi(app, host, port, name="model endpoint (OpenAI/Anthropic)",
                             task_status=task_status)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the bind's OSError, bare, as the docstring promises
        bind_errors, others = group.split(OSError)
        if bind_errors is None or others is not None:
            raise
        first: BaseException = bind_errors
        while isinstance(first, BaseExceptionGroup):  # the leaf: the OSError itself
            first = first.exceptions[0]
        raise first from None
    finally:
        await proxy.aclose()


def build_app(proxy: Proxy, *, check_host: bool) -> ASGIApp:
    """The endpoint as an ASGI app (`check_host`: the Host header must name loopback)."""

    async def forward(request: Request) -> Response:
        return await _answer(proxy, request, _forward)

    async def upstream(request: Request) -> Response:
        return await _answer(proxy, request, _upstream)

    async def models(request: Request) -> Response:
        return await _answer(proxy, request, _models)

    async def metrics(request: Request) -> Response:
        return await _answer(proxy, request, _metrics)

    async def health(request: Request) -> Response:
        return json_reply(200, {"status": "ok"})

    app = Starlette(
        routes=[Route("/health", health, methods=["GET"]),
                Route("/v1/models", models, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                *(Route(path, forward, methods=["POST"]) for path in ROUTES),
                Route("/upstream/{model}/{path:path}", upstream,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])],
        middleware=[Middleware(LocalOnly, check_host=check_host, max_body=proxy.settings().max_body_bytes,
                               refuse=guard_refusal)],
        exception_handlers={HTTPException: _http_exception})
    return _without_trailing_slash(app)


def _without_trailing_slash(app: ASGIApp) -> ASGIApp:
    async def normalised(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/") \
                and not scope["path"].startswith("/upstream/"):
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        await app(scope, receive, send)

    return normalised


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method, body too large) in the API's format."""
    assert isinstance(exc, HTTPException)
    api = api_of(request.url.path)
    if exc.status_code == 404:
        return ProxyError(404, "not_found", f"no endpoint {request.url.path}", hint="endpoints: "
                          f"GET /v1/models, POST {', '.join(ROUTES)}, /upstream/MODEL/PATH", retry=False
                          ).response(api)
    if exc.status_code == 405:
        allow = ", ".join(sorted(m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")))
        response = ProxyError(405, "method_not_allowed", f"{request.url.path} accepts {allow}",
                              retry=False).response(api)
        response.headers["allow"] = allow
        return response
    reason = "too_large" if exc.status_code == 413 else "bad_request"
    return ProxyError(exc.status_code, reason, str(exc.detail), retry=False).response(api)


# ---- the routes ------------------------------------------------------------------------------


async def _answer(proxy: Proxy, request: Request, handler: Any) -> Response:
    api = api_of(request.url.path)
    try:
        proxy.keys.check(proxy.settings(), {k.lower(): v for k, v in request.headers.items()})
        result: Response = await handler(proxy, request)
        return result
    except ProxyError as exc:
        return exc.response(api)
    except HTTPException:
        raise  # the body bound: answered by the app's HTTPException handler
    except Exception as exc:
        log.exception("endpoint %s %s failed", request.method, request.url.path)
        return ProxyError(500, "internal_error", f"internal error: {exc}", hint="see the daemon log",
                          retry=False).response(api)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyError(400, "bad_json", f"the body is not valid JSON: {exc}", retry=False) from None
    if not isinstance(body, dict):
        raise ProxyError(400, "bad_json", "the body must be a JSON object", retry=False)
    return body


def _loading_state(proxy: Proxy, request: Request, body: dict[str, Any]) -> bool:
    if body.get("stream") is not True:
        return False
    header = request.headers.get(LOADING_HEADER)
    if header is not None:
        return header.strip().lower() in ("1", "true", "yes", "on")
    return proxy.settings().send_loading_state


async def _forward(proxy: Proxy, request: Request) -> Response:
    body = await _json_body(request)
    target = proxy.gate.resolve(body.get("model"))
    path = request.url.path
    query = f"?{request.url.query}" if request.url.query else ""
    return Forward(proxy, Outgoing(api_of(path), ROUTES[path], target, "POST", path + query,
                                   await request.body(), list(request.headers.items()),
                                   _loading_state(proxy, request, body)))


async def _upstream(proxy: Proxy, request: Request) -> Response:
    target = proxy.gate.resolve(request.path_params["model"])
    raw = await request.body()
    body: dict[str, Any] = {}
    if raw.strip():
        body = await _json_body(request)
    query = f"?{request.url.query}" if request.url.query else ""
    path = "/" + str(request.path_params["path"])
    return Forward(proxy, Outgoing(api_of(path), "upstream", target, request.method, path + query, raw,
                                   list(request.headers.items()), _loading_state(proxy, request, body)))


async def _models(proxy: Proxy, request: Request) -> Response:
    """Every profile and alias with its state; Anthropic's list form for Anthropic clients."""
    config = proxy.gate.config()
    states = {m["id"]: m["state"] for m in proxy.core.status().get("models") or ()}
    rows = []
    for profile in config.profiles.values():
        state = states.get(profile.id, "stopped")
        requests = proxy.core.requests.to_dict(profile.id)
        for name in (profile.id, *profile.aliases):
            rows.append({"id": name, "name": profile.name, "state": state, "profile": profile.id,
                         "alias_of": None if name == profile.id else profile.id, **requests})
    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": r["id"], "display_name": r["name"],
                 "created_at": "1970-01-01T00:00:00Z", "state": r["state"], "alias_of": r["alias_of"]}
                for r in rows]
        return json_reply(200, {"data": data, "has_more": False,
                                "first_id": data[0]["id"] if data else None,
                                "last_id": data[-1]["id"] if data else None})
    return json_reply(200, {"object": "list", "data": [
        {"object": "model", "created": 0, "owned_by": "llm-mcp", **r} for r in rows]})


async def _gpu_sample(samplers: Any) -> dict[str, Any] | None:
    """The daemon's last GPU sample, taken again when older than 2 s (server.Samplers.gpu_now):
    the sampling loop runs only while a monitor watches, a scraper must still see the GPU."""
    if samplers is None:
        return None
    last: dict[str, Any] | None = samplers.last_gpu
    try:
        with anyio.move_on_after(GPU_SAMPLE_TIMEOUT):
            fresh: dict[str, Any] = await samplers.gpu_now()
            return fresh
    except Exception:
        log.exception("GPU sample for /metrics failed")
    return last


async def _metrics(proxy: Proxy, request: Request) -> Response:
    models = list(proxy.gate.config().profiles)
    requests = proxy.core.requests
    gpu = await _gpu_sample(proxy.samplers)
    text = proxy.metrics.render(models, {m: requests.inflight(m) for m in models},
                                {m: requests.queued(m) for m in models}, gpu)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8",
                             headers={"cache-control": "no-store"})



