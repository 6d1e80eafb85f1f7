"""API keys of the model endpoint: `Authorization: Bearer KEY` (OpenAI) or `x-api-key: KEY` (Anthropic).

The keys are [proxy] api_keys plus the lines of api_keys_file, read again when the file
changes (rotation needs no restart). Every configured key is compared, each with
hmac.compare_digest, so the time taken says nothing about which key came close. No key
configured: no check (the endpoint listens on loopback; models_conf refuses a remote
listen address without keys). A key file that became unreadable refuses every request.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from llm_mcp.config.proxy_conf import ProxySettings, read_api_keys_file
from llm_mcp.daemon.proxy_errors import ProxyError

__all__ = ["Keys"]

log = logging.getLogger("llm_mcp.proxy")


class Keys:
    def __init__(self) -> None:
        self._file: tuple[Path, float, int, tuple[str, ...]] | None = None  # path, mtime, size, keys

    def check(self, settings: ProxySettings, headers: dict[str, str]) -> None:
        """Raise a 401 ProxyError unless the request carries a valid key (`headers`: lower-case)."""
        if not settings.keyed:
            return
        keys = settings.api_keys + self._file_keys(settings.api_keys_file)
        given = _presented(headers)
        if given is None:
            raise ProxyError(401, "missing_api_key", "this endpoint needs an API key",
                             hint="send Authorization: Bearer KEY (OpenAI clients) or x-api-key: KEY "
                             "(Anthropic clients)", retry=False)
        matched = False
        for key in keys:  # no early exit: the same work whichever key matches
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not matched:
            raise ProxyError(401, "invalid_api_key", "the API key is not valid for this endpoint",
                             hint="use a key from [proxy] api_keys or api_keys_file", retry=False)

    def _file_keys(self, path: Path | None) -> tuple[str, ...]:
        if path is None:
            return ()
        try:
            st = os.stat(path)
            cached = self._file
            if cached is not None and cached[:3] == (path, st.st_mtime, st.st_size):
                return cached[3]
            keys = read_api_keys_file(path)
        except (OSError, ValueError) as exc:
            self._file = None
            log.warning("api_keys_file: %s", exc)
            raise ProxyError(401, "api_keys_file_unreadable", f"the endpoint's key file cannot be used "
                             f"({exc}); every request is refused until it is fixed",
                             hint="fix [proxy] api_keys_file (one key a line, chmod 600)",
                             retry=False) from None
        self._file = (path, st.st_mtime, st.st_size, keys)
        return keys


def _presented(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None
