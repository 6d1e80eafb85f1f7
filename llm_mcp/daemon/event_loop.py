"""The daemon's event loop: asyncio on uvloop where uvloop is installed (a dependency on Linux).

Measured with bench/proxy_overhead.py on 2 CPUs: the endpoint's CPU a relayed chunk and a
request's setup both about a fifth lower than on the standard loop. Everything in the
daemon is written against anyio, so the loop is a choice made here only; without uvloop
(another platform, a trimmed install) the standard loop runs the same code.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["loop_name", "run"]

T = TypeVar("T")


def loop_name() -> str:
    """The loop `run` uses: "uvloop" or "asyncio"."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run(main: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": loop_name() == "uvloop"})
