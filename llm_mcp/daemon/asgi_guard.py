"""What every HTTP face of the daemon refuses before any route runs (ASGI middleware).

No authentication: the daemon's HTTP listens on loopback unless the user allows
otherwise, so the threats are a web page in the user's own browser and a DNS
name rebound to 127.0.0.1. Hence: the Host header must name the loopback host
(when bound to loopback), a request a browser makes for another site (an Origin
other than this server's, or Sec-Fetch-Site cross-site/same-site) is refused for
every method, GETs included, POST bodies must be JSON (no cross-site form posts)
and no body is larger than a bound. The HTTP API and the OpenAI/Anthropic proxy
share it; each passes its own error format as `refuse`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "MAX_BODY_BYTES", "BodyTooLarge", "LocalOnly", "cross_site", "error_body",
           "error_reply", "json_reply", "loopback_host_header"]

MAX_BODY_BYTES = 1 << 20
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# status, reason, message -> the reply in the caller's error format
Refuse = Callable[[int, str, str], Response]


def error_reply(status: int, reason: str, message: str, headers: dict[str, str] | None = None,
                **extra: Any) -> Response:
    return json_reply(status, error_body(status, reason, message, **extra), headers)


def error_body(status: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error": {"status", "reason", "message", ...extra}}` (the HTTP API's format); `job` goes on top."""
    body: dict[str, Any] = {"error": {"status": status, "reason": reason, "message": message,
                                      **{k: v for k, v in extra.items() if k != "job"}}}
    if "job" in extra:
        body["job"] = extra["job"]
    return body


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(payload, default=str).encode() + b"\n"
    return Response(data, status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store", **(headers or {})})


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the bound; an app's HTTPException handler may answer it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class LocalOnly:
    """Refuses cross-site and rebound requests and non-JSON POSTs; bounds request bodies."""

    def __init__(self, app: ASGIApp, *, check_host: bool, max_body: int = MAX_BODY_BYTES,
                 refuse: Refuse = error_reply) -> None:
        self.app = app
        self.check_host = check_host  # only meaningful on loopback: a remote bind has many names
        self.max_body = max_body
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await self.refuse(*refusal)(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await self.refuse(413, "too_large", exc.detail)(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.check_host and not loopback_host_header(headers.get("host", "")):
            return 403, "forbidden_host", ("the Host header must name the loopback address this server "
                                           "listens on (DNS rebinding protection)")
        if foreign := cross_site(headers):
            return 403, "forbidden_origin", (f"{foreign}: requests from web pages of other sites are "
                                             "refused (scripts and curl send no Origin header)")
        length = headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.max_body:
            return 413, "too_large", f"request body over {self.max_body} bytes"
        if scope["method"] in _BODY_METHODS and \
                not headers.get("content-type", "").lower().startswith("application/json"):
            return 415, "unsupported_media_type", ("request bodies must be JSON with the header "
                                                   "Content-Type: application/json (curl --json '{...}')")
        return None


def cross_site(headers: dict[str, str]) -> str | None:
    """Why a request comes from another site's page, or None (`headers`: lower-case names).

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
    return f"Origin {origin[:200]!r} is not this server"


def loopback_host_header(host: str) -> bool:
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES
