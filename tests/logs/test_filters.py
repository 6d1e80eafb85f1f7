"""A catastrophic log filter never freezes the daemon: over the socket, MCP and HTTP.

The filter backtracks for minutes per line; the old daemon ran it with `re` on its
event loop and stopped answering everyone. Now the call itself ends with a clear
error within a bound, and another client's `status` is answered within 100 ms
all along.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import TextContent

from llm_mcp.clients.client import DaemonClient
from llm_mcp.clients.mcp_server import make_server
from llm_mcp.daemon.http_api import serve_http
from tests.conftest import FAKE_PROFILES, Setup
from tests.daemons import Daemons, Raw, cli, in_process_daemon, socket_of
from tests.logs.conftest import CATASTROPHIC, extra
from tests.mcp.conftest import MCP_PROFILES

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

LINES = 3000
# 3,000 lines of 54 characters without a b or a c: each takes the filter minutes with `re`.
CHATTY = extra("chatty", f"--fake-lines {LINES} --fake-line-rate 0 --fake-line-fill {'a' * 40}")
STATUS_WITHIN_S = 0.1
ERROR_WITHIN_S = 5.0


async def while_filtering(run_filter: Callable[[], Awaitable[Any]],
                          status: Callable[[], Awaitable[Any]]) -> tuple[Any, float, list[float]]:
    """Run the filter call; meanwhile time `status` calls from another client, back to back."""
    outcome: list[Any] = []
    latencies: list[float] = []
    started = time.monotonic()

    async def filtering() -> None:
        outcome.append(await run_filter())

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(filtering)
            while not outcome:
                t0 = time.monotonic()
                await status()
                latencies.append(time.monotonic() - t0)
                await anyio.sleep(0.01)
    return outcome[0], time.monotonic() - started, latencies


def assert_never_blocked(took: float, latencies: list[float]) -> None:
    assert took < ERROR_WITHIN_S, f"the filter call took {took:.1f}s"
    assert len(latencies) >= 3
    assert max(latencies) < STATUS_WITHIN_S, f"status took up to {max(latencies) * 1000:.0f} ms"


async def test_over_the_socket_a_catastrophic_filter_fails_fast_and_status_never_waits(
    setup: Setup, daemons: Daemons
) -> None:
    setup.write(FAKE_PROFILES + CHATTY)
    daemons.start()
    filtering, other = await Raw.open(socket_of(setup)), await Raw.open(socket_of(setup))
    try:
        with anyio.fail_after(60):
            switched = await other.call("switch", {"model": "chatty", "wait": True})
            assert switched["result"]["result"] == "ready", switched
            while (await other.call("tail_logs", {"lines": 1}))["result"]["lines"][-1]["text"] \
                    != f"fake line {LINES} {'a' * 40}":
                await anyio.sleep(0.1)
        reply, took, latencies = await while_filtering(
            lambda: filtering.call("tail_logs", {"lines": 100, "filter": CATASTROPHIC}),
            lambda: other.call("status", {"gpu": False}))
    finally:
        await filtering.aclose()
        await other.aclose()
    assert reply["error"]["code"] == -32602
    assert reply["error"]["message"] == "filter took too long; simplify it"
    assert reply["error"]["data"]["reason"] == "filter_timeout"
    assert_never_blocked(took, latencies)
    # The CLI's --grep is the same filter: the same clear error, no hang, no traceback.
    started = time.monotonic()
    done = cli(setup, "logs", "-n", "100", "--grep", CATASTROPHIC, timeout=30)
    assert time.monotonic() - started < 10
    assert done.returncode != 0
    assert "filter took too long; simplify it" in done.stderr and "Traceback" not in done.stderr


async def test_over_mcp_a_catastrophic_filter_is_a_tool_error_and_status_never_waits(
    mcp_setup: Setup, daemon: DaemonClient
) -> None:
    mcp_setup.write(MCP_PROFILES + CHATTY)
    with anyio.fail_after(60):
        job = await daemon.call("switch", model="chatty", wait=True)
        assert job["result"] == "ready", job
        while (await daemon.call("tail_logs", lines=1))["lines"][-1]["text"] != \
                f"fake line {LINES} {'a' * 40}":
            await anyio.sleep(0.1)
    async with Client(make_server(daemon), mode="legacy") as mcp, \
            DaemonClient(socket_of(mcp_setup), config_path=mcp_setup.config_path, autostart=False,
                         name="other") as other:
        result, took, latencies = await while_filtering(
            lambda: mcp.call_tool("tail_logs", {"lines": 100, "filter": CATASTROPHIC, "run": "all"}),
            lambda: other.call("status", gpu=False))
    assert result.is_error
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    assert "filter took too long; simplify it" in text
    assert_never_blocked(took, latencies)


async def test_over_http_a_catastrophic_filter_is_a_400_and_status_never_waits(setup: Setup) -> None:
    setup.write(FAKE_PROFILES + CHATTY)
    async with in_process_daemon(setup) as daemon, anyio.create_task_group() as tg:
        port = await tg.start(serve_http, daemon, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as page, \
                httpx.AsyncClient(base_url=base, timeout=60) as other:
            with anyio.fail_after(60):
                switched = await other.post("/switch", json={"model": "chatty"})
                assert switched.status_code == 200, switched.text
                while (await other.get("/logs", params={"n": 1})).json()["lines"][-1]["text"] != \
                        f"fake line {LINES} {'a' * 40}":
                    await anyio.sleep(0.1)
            response, took, latencies = await while_filtering(
                lambda: page.get("/logs", params={"n": 100, "filter": CATASTROPHIC}),
                lambda: other.get("/status"))
        tg.cancel_scope.cancel()
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "filter took too long; simplify it"
    assert_never_blocked(took, latencies)
