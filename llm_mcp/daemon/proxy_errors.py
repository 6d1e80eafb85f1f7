"""Errors of the model endpoint, each in the format of the API the client speaks.

OpenAI: `{"error": {"message", "type", "code", "param"}}`; Anthropic:
`{"type": "error", "error": {"type", "message"}}`. Both carry our reason code, the
hint and the load's last log lines as extra fields (the SDKs keep the whole body on
the exception), and the message itself ends with the hint, so `str(exc)` says what
to do. Streams that already began get the same body as an SSE event. Whether the
SDKs retry is ours to say: `x-should-retry: false` where a retry cannot help (a load
that failed would only fail again, slower).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["Api", "ApiError", "ProxyError", "api_of", "error_body", "error_event", "guard_refusal"]

Api = Literal["openai", "anthropic"]

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "invalid_request_error", 415: "invalid_request_error",
                 429: "rate_limit_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
                    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def api_of(path: str) -> Api:
    """Which API a path belongs to: Anthropic's Messages, else OpenAI's (the pass-through included)."""
    return "anthropic" if path == "/v1/messages" or path.startswith("/v1/messages/") else "openai"


class ProxyError(Exception):
    """A refusal or failure the client can act on; `reason` is our code (`queue_full`, `oom`, ...)."""

    def __init__(self, status: int, reason: str, message: str, *, hint: str | None = None,
                 log_lines: list[str] | None = None, retry: bool | None = None,
                 retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.hint = hint
        self.log_lines = log_lines
        self.retry = retry
        self.retry_after = retry_after
        self.extra = extra

    def body(self, api: Api) -> dict[str, Any]:
        return error_body(api, self.status, self.reason, self.message, hint=self.hint,
                          log_lines=self.log_lines, **self.extra)

    def headers(self) -> dict[str, str]:
        headers = {"cache-control": "no-store"}
        if self.retry is not None:
            headers["x-should-retry"] = "true" if self.retry else "false"
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after)))
        if self.status == 401:
            headers["www-authenticate"] = 'Bearer realm="llm-mcp"'
        return headers

    def response(self, api: Api) -> Response:
        return Response(json.dumps(self.body(api), default=str).encode() + b"\n", status_code=self.status,
                        media_type="application/json", headers=self.headers())

    def event(self, api: Api) -> bytes:
        return error_event(api, self.body(api))


def error_body(api: Api, status: int, reason: str, message: str, *, hint: str | None = None,
               log_lines: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    text = message if not hint or hint in message else f"{message}. {hint}"
    details: dict[str, Any] = {"reason": reason}
    if hint:
        details["hint"] = hint
    if log_lines:
        details["log_lines"] = log_lines
    details.update(extra)
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": text, **details}}
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": text, "type": kind, "code": reason, "param": None, **details}}


def error_event(api: Api, body: dict[str, Any]) -> bytes:
    """The error as an SSE event, for a stream whose 200 already went out (both SDKs raise on it)."""
    data = json.dumps(body, default=str)
    if api == "anthropic":
        return f"event: error\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


class ApiError(Response):
    """A refusal that picks its format from the request's path when sent (asgi_guard's `refuse`)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(b"", status_code=status)
        self.error = ProxyError(status, reason, message, retry=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.error.response(api_of(scope.get("path", "")))(scope, receive, send)


def guard_refusal(status: int, reason: str, message: str) -> Response:
    return ApiError(status, reason, message)
