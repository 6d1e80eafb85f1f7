"""The socket protocol shared by the daemon and its clients (docs/protocol.md).

Newline-delimited JSON-RPC 2.0 over a Unix socket. Pure data and codecs, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # a request never needs more; longer lines close the connection

METHODS = ("hello", "list_models", "status", "switch", "job", "tail_logs", "stop",
           "subscribe", "unsubscribe", "config")

# JSON-RPC's own codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# ours: the `data` member carries {"reason", "hint", ...}
UNKNOWN_MODEL = 1001
BUSY = 1002
CONFIG_ERROR = 1003
NOT_FOUND = 1004
DOCKER_UNAVAILABLE = 1005
PROTOCOL_MISMATCH = 1006


class ProtocolError(Exception):
    """A JSON-RPC error, raised by handlers and re-raised by clients."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.data = data or {}
        super().__init__(message)

    @property
    def reason(self) -> str:
        return str(self.data.get("reason", ""))

    @property
    def hint(self) -> str:
        return str(self.data.get("hint", ""))

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            error["data"] = self.data
        return error


@dataclass(frozen=True, slots=True)
class Request:
    id: int | str | None  # None: a notification (no answer expected)
    method: str
    params: dict[str, Any]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def request(id_: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    return encode({"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}})


def result(id_: int | str | None, value: Any) -> bytes:
    return encode({"jsonrpc": "2.0", "id": id_, "result": value})


def error(id_: int | str | None, err: ProtocolError) -> bytes:
    return encode({"jsonrpc": "2.0", "id": id_, "error": err.to_json()})


def notification(method: str, params: dict[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "method": method, "params": params})


def parse_request(line: bytes) -> Request:
    """Decode one line; raises ProtocolError with the JSON-RPC code for anything malformed."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(PARSE_ERROR, f"parse error: {exc}") from None
    if isinstance(message, list):
        raise ProtocolError(INVALID_REQUEST, "invalid request: batches are not supported; send one "
                            "JSON-RPC object per line")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, "invalid request: expected a JSON-RPC 2.0 object")
    method = message.get("method")
    if not isinstance(method, str):
        raise ProtocolError(INVALID_REQUEST, "invalid request: 'method' must be a string")
    id_ = message.get("id")
    if id_ is not None and not isinstance(id_, int | str):
        raise ProtocolError(INVALID_REQUEST, "invalid request: 'id' must be a number or a string")
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, "params must be an object (named parameters)")
    return Request(id_, method, params)


def param(params: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """A typed parameter or INVALID_PARAMS naming it."""
    if name not in params or params[name] is None:
        if default is ...:
            raise ProtocolError(INVALID_PARAMS, f"missing parameter '{name}'")
        return default
    value = params[name]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ProtocolError(INVALID_PARAMS, f"parameter '{name}' must be a number")
    if not isinstance(value, kind):
        raise ProtocolError(INVALID_PARAMS, f"parameter '{name}' has the wrong type")
    return value
