"""The socket protocol shared by the daemon and its clients (docs/protocol.md).

Newline-delimited JSON-RPC 2.0 over a Unix socket. Pure data, codecs and the
parameter schema of every method, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # a request never needs more; longer lines close the connection

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
PROTOCOL_MISMATCH = 1006
WONT_FIT = 1007  # the switch's pre-flight: the profile does not fit in memory; nothing was stopped


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


# ---- parameters: one strict schema per method, checked before any handler runs --------

MAX_SECONDS = 86400.0  # a wait longer than a day is a mistake, not a plan
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Topic = Literal["state", "job", "log", "gpu", "system"]
TOPICS: tuple[Topic, ...] = ("state", "job", "log", "gpu", "system")  # the one list (events, monitor)


class Params(BaseModel):
    # strict: "5" is not 5 and true is not 1; forbid: a misspelt name is an error, not a default
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoParams(Params):
    pass


class HelloParams(Params):
    protocol: int = PROTOCOL_VERSION  # any number: a mismatch gets its own error, with the fix
    client: str = Field("client", max_length=200)


class StatusParams(Params):
    gpu: bool = True


class SwitchParams(Params):
    model: str = Field(min_length=1, max_length=200)
    force: bool = False
    rollback: bool = True
    wait: bool = False
    timeout: Seconds = 900.0


class JobParams(Params):
    id: str = Field(min_length=1, max_length=200)
    wait: bool = False
    timeout: Seconds = 600.0


ModelId = Annotated[str, Field(min_length=1, max_length=200)]


class StopParams(Params):
    """Stop every running model (unload_all)."""

    force: bool = False
    wait: bool = True
    timeout: Seconds = 120.0


class UnloadParams(Params):
    """Stop one running model; the others keep serving."""

    model: ModelId
    force: bool = False
    wait: bool = True
    timeout: Seconds = 120.0


class BenchParams(Params):
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=32)
    prompt_tokens: int = Field(512, ge=1, le=131072)
    gen_tokens: int = Field(128, ge=1, le=16384)
    repeat: int = Field(3, ge=1, le=100)
    force: bool = False
    wait: bool = False
    timeout: Seconds = 3600.0


class TailLogsParams(Params):
    lines: int = Field(100, ge=0, le=10000)
    filter: str = Field("", max_length=1000)
    run: Literal["all", "current", "previous"] = "all"
    model: ModelId | None = None  # only this model's lines (and the notes about it); None: all


class SubscribeParams(Params):
    topics: list[Topic] = Field(default_factory=lambda: list(TOPICS), max_length=len(TOPICS) * 4)
    capacity: int = Field(2000, ge=1, le=100_000)  # events queued per subscriber before the oldest drop


PARAMS: dict[str, type[Params]] = {
    "hello": HelloParams,
    "list_models": NoParams,
    "status": StatusParams,
    "switch": SwitchParams,
    "job": JobParams,
    "tail_logs": TailLogsParams,
    "stop": StopParams,
    "unload": UnloadParams,
    "subscribe": SubscribeParams,
    "unsubscribe": NoParams,
    "bench": BenchParams,
}
METHODS = tuple(PARAMS)


def validate_params(method: str, params: dict[str, Any]) -> Params:
    """The method's parameters, checked; METHOD_NOT_FOUND or INVALID_PARAMS naming the parameter."""
    model = PARAMS.get(method)
    if model is None:
        raise unknown_method(method)
    return check_params(model, method, params)


def unknown_method(method: str) -> ProtocolError:
    return ProtocolError(METHOD_NOT_FOUND, f"unknown method '{method}'; valid: {', '.join(METHODS)}")


def check_params(model: type[Params], method: str, params: dict[str, Any]) -> Params:
    """`params` checked against `model`; INVALID_PARAMS naming the parameter and what is valid.

    A null value means "the default", as it always has.
    """
    try:
        return model.model_validate({k: v for k, v in params.items() if v is not None})
    except pydantic.ValidationError as exc:
        raise _invalid(method, model, exc) from None


def _invalid(method: str, model: type[Params], exc: pydantic.ValidationError) -> ProtocolError:
    first = exc.errors(include_url=False)[0]
    loc = first.get("loc") or ("",)
    name = str(loc[0])
    fields = model.model_fields
    if first["type"] == "extra_forbidden":
        valid = ", ".join(fields) or "none"
        return ProtocolError(INVALID_PARAMS, f"{method}: unknown parameter '{name}'; valid: {valid}",
                             {"param": name, "valid": valid})
    if first["type"] == "missing":
        valid = describe(model, name)
        return ProtocolError(INVALID_PARAMS, f"{method}: missing parameter '{name}' ({valid})",
                             {"param": name, "valid": valid})
    got = first.get("input")
    short = isinstance(got, int | float | bool) or (isinstance(got, str) and len(got) <= 40)
    shown = repr(got) if short else f"a {type(got).__name__}"
    detail = first["msg"].replace("Input should", "should").replace("String should", "should")
    if len(loc) > 1:  # an item of a list
        detail = f"item {loc[1]} {detail}"
    return ProtocolError(INVALID_PARAMS, f"{method}: parameter '{name}' {detail} (got {shown}); valid: "
                         f"{describe(model, name)}", {"param": name, "valid": describe(model, name)})


def describe(model: type[Params], name: str) -> str:
    """A parameter's valid values in a few words: "integer 1..100000", "one of all, current"."""
    schema = model.model_json_schema()["properties"].get(name, {})
    if "enum" in schema or "const" in schema:
        return "one of " + ", ".join(str(v) for v in schema.get("enum", [schema.get("const")]))
    kind = {"integer": "integer", "number": "number", "boolean": "true or false", "string": "string",
            "array": "list"}.get(str(schema.get("type")), "value")
    if kind == "list":
        items = schema.get("items", {})
        ref = items.get("$ref")
        choices = items.get("enum") or (model.model_json_schema().get("$defs", {}).get(
            str(ref).rsplit("/", 1)[-1], {}).get("enum") if ref else None)
        return "list of " + (", ".join(map(str, choices)) if choices else "values")
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind == "string":
        low, high = schema.get("minLength"), schema.get("maxLength")
        return f"string of {low or 0}..{high} characters" if high else "string"
    if low is not None and high is not None:
        return f"{kind} {low:g}..{high:g}"
    return kind
