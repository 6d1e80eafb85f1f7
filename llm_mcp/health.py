"""Talking to llama-server over HTTP: /health, /slots and one verification completion."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Built once: httpx loads the CA bundle for every client (~30 ms, in the event loop)."""
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Health:
    status: str  # "ok" | "loading" | "unreachable" | "error"
    code: int | None
    detail: str


class LlamaServerProbe:
    """One llama-server at base_url; every call is bounded and never raises."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(2.0, connect=1.0),
                                                   verify=_ssl_context())
        self._owns_client = client is None

    async def health(self) -> Health:
        try:
            response = await self._client.get(f"{self.base_url}/health", timeout=1.0)
        except httpx.HTTPError as exc:
            return Health("unreachable", None, type(exc).__name__)
        if response.status_code == 200:
            return Health("ok", 200, "")
        if response.status_code == 503:
            return Health("loading", 503, _message(response))
        return Health("error", response.status_code, _message(response))

    async def busy_slots(self) -> int | None:
        """How many slots are generating; None when /slots can't tell (disabled, down)."""
        try:
            response = await self._client.get(f"{self.base_url}/slots", timeout=2.0)
            slots = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code != 200 or not isinstance(slots, list):
            return None
        return sum(1 for slot in slots if isinstance(slot, dict) and slot.get("is_processing"))

    async def measure_speed(self, model: str, max_tokens: int = 32) -> float | None:
        """Generation tokens/s from one short completion (llama-server's own timings)."""
        body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": "Count from 1 to 20."}]}
        try:
            response = await self._client.post(f"{self.base_url}/v1/chat/completions",
                                               json=body, timeout=120.0)
            data: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        timings = data.get("timings") if isinstance(data, dict) else None
        if isinstance(timings, dict) and isinstance(timings.get("predicted_per_second"), int | float):
            return float(timings["predicted_per_second"])
        return None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
        return str(data.get("error", {}).get("message", ""))
    except (ValueError, AttributeError):
        return response.text[:200]
