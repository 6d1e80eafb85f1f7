"""What the monitor needs from a daemon client (llm_mcp.clients.client.DaemonClient provides it).

Tests hand `make_app` a factory for anything with this shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol


class MonitorClient(Protocol):
    hello: dict[str, Any]

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> Any: ...

    async def call(self, method: str, **params: Any) -> Any: ...

    def events(self, topics: list[str], capacity: int = 2000) -> AsyncIterator[dict[str, Any]]: ...


ClientFactory = Callable[[], MonitorClient]
