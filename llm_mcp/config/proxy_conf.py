"""models.conf's [proxy] section: the OpenAI- and Anthropic-compatible endpoint (docs/proxy.md).

Parsed with the rest of models.conf (models_conf.parse_config calls `proxy_section`), so
its errors name file:line:key like every other key. The api_keys_file is read here to
check it and again by the daemon whenever it changes (keys rotate without a restart).
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from llm_mcp.config.binds import is_loopback, parse_bind
from llm_mcp.util.safe_files import UnsafePathError, open_private

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_QUEUE_LIMIT", "PROXY_KEYS", "PROXY_SECTION", "ProxySettings",
           "parse_api_keys", "proxy_section", "read_api_keys_file"]

PROXY_SECTION = "proxy"
PROXY_KEYS = ("listen", "allow_remote", "api_keys", "api_keys_file", "queue_limit", "queue_timeout",
              "max_body_bytes", "send_loading_state")
DEFAULT_QUEUE_LIMIT = 16
DEFAULT_MAX_BODY = 16 << 20  # 16 MiB: long contexts with images base64-encoded
QUEUE_TIMEOUT_MARGIN = 30.0  # default queue_timeout: the profile's load_timeout plus this
RANGES: dict[str, tuple[float, float]] = {
    "queue_limit": (0, 100_000),  # 0: a model that is not ready is never waited for (503 at once)
    "queue_timeout": (1, 86_400),
    "max_body_bytes": (1_024, 1 << 30),
}
MAX_KEY_CHARS = 512
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """[proxy]: where the endpoint listens and what it admits; every field validated."""

    listen: str | None = None  # "HOST:PORT"; None: off
    allow_remote: bool = False
    api_keys: tuple[str, ...] = ()  # written in models.conf itself
    api_keys_file: Path | None = None  # one key a line, 0600; read again when it changes
    queue_limit: int = DEFAULT_QUEUE_LIMIT  # requests waiting per model for its load
    queue_timeout: float | None = None  # None: the profile's load_timeout + QUEUE_TIMEOUT_MARGIN
    max_body_bytes: int = DEFAULT_MAX_BODY
    send_loading_state: bool = False  # streaming requests get `: loading ...` comments while loading

    @property
    def keyed(self) -> bool:
        """Does the endpoint ask for an API key?"""
        return bool(self.api_keys) or self.api_keys_file is not None

    def wait_limit(self, load_timeout: float) -> float:
        """How long a request waits for a model's load before a 503."""
        return self.queue_timeout if self.queue_timeout is not None else load_timeout + QUEUE_TIMEOUT_MARGIN


# section, key, message -> the error to raise (models_conf's `fail`: it knows the file and line)
Fail = Callable[[str, "str | None", str], Exception]


def proxy_section(own: dict[str, str] | None, fail: Fail, warnings: list[str],
                  resolve: Callable[[str], Path]) -> ProxySettings:
    """[proxy]'s keys (`own`; None: no section) -> ProxySettings; `resolve` makes a path absolute."""
    if own is None:
        return ProxySettings()
    for key in own:
        if key not in PROXY_KEYS:
            raise fail(PROXY_SECTION, key, f"unknown key; valid keys: {', '.join(PROXY_KEYS)}")

    def parsed(key: str, parse: Callable[[str], T], default: T) -> T:
        if key not in own:
            return default
        try:
            return parse(own[key])
        except ValueError as exc:
            raise fail(PROXY_SECTION, key, str(exc)) from None

    key_file: Path | None = None
    if own.get("api_keys_file", "").strip():
        try:
            key_file = resolve(own["api_keys_file"].strip())
            read_api_keys_file(key_file)
        except (OSError, ValueError) as exc:
            raise fail(PROXY_SECTION, "api_keys_file", str(exc)) from None
    settings = ProxySettings(
        listen=None, allow_remote=parsed("allow_remote", _bool, False),
        api_keys=parsed("api_keys", parse_api_keys, ()), api_keys_file=key_file,
        queue_limit=parsed("queue_limit", _int("queue_limit"), DEFAULT_QUEUE_LIMIT),
        queue_timeout=parsed("queue_timeout", _seconds("queue_timeout"), None),
        max_body_bytes=parsed("max_body_bytes", _int("max_body_bytes"), DEFAULT_MAX_BODY),
        send_loading_state=parsed("send_loading_state", _bool, False))
    listen = own.get("listen", "").strip()
    if not listen or listen.lower() == "off":
        return settings
    try:
        host, _ = parse_bind(listen, allow_remote=True)
    except ValueError as exc:
        raise fail(PROXY_SECTION, "listen", f"{exc} (e.g. 127.0.0.1:8080, or off)") from None
    if not is_loopback(host):
        if not settings.allow_remote:
            raise fail(PROXY_SECTION, "listen", f"{host} is not a loopback address; use 127.0.0.1:PORT, or "
                       "set allow_remote = true (with api_keys or api_keys_file) to expose it")
        if not settings.keyed:
            raise fail(PROXY_SECTION, "listen", f"{host} is not a loopback address and no API key is set: "
                       "anyone who reaches it could load models; set api_keys_file (or api_keys)")
        warnings.append(str(fail(PROXY_SECTION, "listen", f"the model endpoint listens on {host}: "
                                 "whoever has an API key can load and use every model")))
    return dataclasses.replace(settings, listen=listen)


def parse_api_keys(raw: str) -> tuple[str, ...]:
    """A comma list of keys: none empty, none with spaces or control characters."""
    keys = tuple(k.strip() for k in raw.split(","))
    if not any(keys):
        raise ValueError("no key given; write api_keys = KEY1, KEY2 (or remove the line)")
    for key in keys:
        _check_key(key)
    return keys


def read_api_keys_file(path: Path) -> tuple[str, ...]:
    """The keys of a key file: one a line, `#` starts a comment; it must be ours and 0600.

    Looser permissions are an error, not quietly tightened: whoever could read the
    file may already hold the keys (rotate them, then chmod 600).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist (one API key a line, chmod 600)") from None
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):03o}): keys in "
                         "it may have leaked; rotate them, then chmod 600 it")
    try:
        with open_private(path, "r") as handle:
            text = handle.read(1 << 20)
    except UnsafePathError as exc:
        raise ValueError(str(exc)) from None
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        try:
            _check_key(key)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        keys.append(key)
    if not keys:
        raise ValueError(f"{path} holds no key (one a line; lines starting with # are comments)")
    return tuple(keys)


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("an empty key (two commas in a row?)")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a key of {len(key)} characters: at most {MAX_KEY_CHARS}")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ValueError("a key holds a space or a control character")


_BOOLS = {"1": True, "yes": True, "true": True, "on": True,
          "0": False, "no": False, "false": False, "off": False}


def _bool(raw: str) -> bool:
    try:
        return _BOOLS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"'{raw}' is not a boolean: use true or false") from None


def _range(key: str) -> str:
    low, high = RANGES[key]
    return f"between {low:g} and {high:g}"


def _int(key: str) -> Callable[[str], int]:
    low, high = RANGES[key]

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"'{raw}' is not a whole number (must be {_range(key)})") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range: must be {_range(key)}")
        return value

    return parse


def _seconds(key: str) -> Callable[[str], float]:
    low, high = RANGES[key]

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip().rstrip("s"))
        except ValueError:
            raise ValueError(f"'{raw}' is not a number of seconds (e.g. 120)") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{raw.strip()} is out of range: must be {_range(key)} seconds")
        return value

    return parse
