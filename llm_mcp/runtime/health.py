"""Talking to llama-server over HTTP: /health, /slots, one verification completion, bench runs."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True, slots=True)
class Completion:
    timings: dict[str, float] | None  # llama-server's own: prompt_n, prompt_per_second, predicted_n, ...
    error: str | None


class Probe(Protocol):
    """What the core asks a llama-server; LlamaServerProbe over HTTP, or a stand-in in tests."""

    async def health(self) -> Health: ...
    async def busy_slots(self) -> int | None: ...
    async def measure_speed(self, model: str, max_tokens: int = 32) -> float | None: ...
    async def slot_context(self) -> int | None: ...
    async def tokenize(self, text: str) -> list[int] | None: ...
    async def timed_completion(self, prompt: list[int], n_predict: int, timeout: float) -> Completion: ...
    async def aclose(self) -> None: ...


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

    async def slot_context(self) -> int | None:
        """Tokens one request may use (/props: the per-slot n_ctx); None when it can't tell."""
        try:
            response = await self._client.get(f"{self.base_url}/props", timeout=5.0)
            data: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        settings = data.get("default_generation_settings") if isinstance(data, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None

    async def tokenize(self, text: str) -> list[int] | None:
        """The model's own token ids for `text` (/tokenize, no special tokens)."""
        try:
            response = await self._client.post(f"{self.base_url}/tokenize",
                                               json={"content": text, "add_special": False}, timeout=30.0)
            data: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return None
        return tokens

    async def timed_completion(self, prompt: list[int], n_predict: int, timeout: float) -> Completion:
        """One /completion of exactly these prompt tokens and `n_predict` generated ones.

        No prompt cache (every run processes the whole prompt) and no early stop at an
        end-of-sequence token; the server's own `timings` say how fast each part ran.
        """
        body = {"prompt": prompt, "n_predict": n_predict, "cache_prompt": False, "ignore_eos": True,
                "temperature": 0}
        try:
            response = await self._client.post(f"{self.base_url}/completion", json=body, timeout=timeout)
            data: Any = response.json()
        except httpx.TimeoutException:
            return Completion(None, f"no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            return Completion(None, f"{type(exc).__name__}: {exc}")
        except ValueError:
            return Completion(None, f"HTTP {response.status_code}: the answer is not JSON")
        if response.status_code != 200 or not isinstance(data, dict):
            message = data.get("error", {}).get("message") if isinstance(data, dict) else None
            return Completion(None, f"HTTP {response.status_code}: {message or str(data)[:200]}")
        timings = data.get("timings")
        if not isinstance(timings, dict):
            return Completion(None, "the answer has no timings")
        return Completion({k: v for k, v in timings.items() if isinstance(v, int | float)}, None)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
        return str(data.get("error", {}).get("message", ""))
    except (ValueError, AttributeError):
        return response.text[:200]
