"""`llm-mcp serve` as a real process: the installed console script over stdio and HTTP,
two servers sharing one daemon, and a daemon restarted under a connected server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from llm_mcp.clients.client import DaemonClient
from tests.conftest import Setup, free_port
from tests.mcp.conftest import LLM_MCP, daemon_pid, serve_env, stop_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

TOOLS = ["list_models", "status", "switch_model", "unload_model", "tail_logs", "fit_model"]


def serve(setup: Setup, *args: str) -> Client:
    return Client(StdioServerParameters(command=str(LLM_MCP), args=["serve", *args], env=serve_env(setup)),
                  mode="legacy")


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(client: Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(name, args or {})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_console_script_serves_the_tools_over_stdio(daemon: DaemonClient, mcp_setup: Setup) -> None:
    with anyio.fail_after(30):
        async with serve(mcp_setup) as client:
            assert [t.name for t in (await client.list_tools()).tools] == TOOLS
            assert client.server_info is not None and client.server_info.name == "llm-mcp"
            status = await call(client, "status")
    assert status["state"] == "stopped"
    assert status["daemon"]["pid"] == daemon.hello["pid"], "serve shares the running daemon"


@pytest.fixture
async def no_daemon_left(mcp_setup: Setup) -> AsyncIterator[Setup]:
    """For tests whose `serve` starts the daemon itself."""
    try:
        yield mcp_setup
    finally:
        await stop_daemon(mcp_setup)


async def test_stdout_carries_nothing_but_protocol_even_while_serve_starts_the_daemon(
        no_daemon_left: Setup) -> None:
    setup = no_daemon_left
    assert daemon_pid(setup) is None
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "status", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "switch_model", "arguments": {"model": "fake-a"}, "_meta": {"progressToken": 7}}},
    ]
    env = {**os.environ, **serve_env(setup)}
    lines: list[bytes] = []
    with anyio.fail_after(60):
        async with await anyio.open_process([str(LLM_MCP), "serve"], env=env,
                                            stderr=subprocess.DEVNULL) as process:
            assert process.stdin is not None and process.stdout is not None
            reader = BufferedByteReceiveStream(process.stdout)
            answered: set[int] = set()
            for request in requests:
                await process.stdin.send(json.dumps(request).encode() + b"\n")
                while "id" in request and request["id"] not in answered:
                    line = await reader.receive_until(b"\n", 1 << 24)
                    lines.append(line)
                    message = json.loads(line)
                    if "id" in message and ("result" in message or "error" in message):
                        answered.add(message["id"])
            await process.stdin.aclose()
            assert await process.wait() == 0
    messages: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    final = next(m for m in messages if m.get("id") == 4)
    assert final["result"]["structuredContent"]["result"] == "ready"
    assert any(m.get("method") == "notifications/progress" for m in messages)
    assert daemon_pid(setup) is not None, "the first tool call started the daemon"


async def test_two_serve_processes_share_one_daemon_and_its_join_refuse_force_rules(
        daemon: DaemonClient, mcp_setup: Setup) -> None:
    async def in_flight() -> dict[str, Any]:
        with anyio.fail_after(10):
            while (job := (await daemon.call("status", gpu=False))["job"]) is None:
                await anyio.sleep(0.05)
        return dict(job)

    with anyio.fail_after(120):
        async with serve(mcp_setup) as one, serve(mcp_setup) as two:
            # join: the same model twice is one job, and both calls see it end
            results: dict[str, CallToolResult] = {}

            async def switch(name: str, client: Client, args: dict[str, Any]) -> None:
                results[name] = await client.call_tool("switch_model", args)

            async with anyio.create_task_group() as tg:
                tg.start_soon(switch, "one", one, {"model": "fake-slow"})
                job = await in_flight()
                tg.start_soon(switch, "two", two, {"model": "fake-slow"})
            first, second = results["one"].structured_content, results["two"].structured_content
            assert first is not None, text_of(results["one"])
            assert second is not None, text_of(results["two"])
            assert first["id"] == second["id"] == job["id"] and first["result"] == second["result"] == "ready"

            # refuse, then force: a different model while one loads
            await call(one, "switch_model", {"model": "fake-a"})
            async with anyio.create_task_group() as tg:
                tg.start_soon(switch, "one", one, {"model": "fake-slow"})
                job = await in_flight()
                refused = await two.call_tool("switch_model", {"model": "fake-b"})
                assert refused.is_error and job["id"] in text_of(refused) and "force=true" in text_of(refused)
                forced = await call(two, "switch_model", {"model": "fake-b", "force": True})
            assert forced["result"] == "ready" and forced["profile"] == "fake-b"
            replaced = results["one"]
            assert replaced.is_error and "cancelled" in text_of(replaced)
            assert forced["id"] in text_of(replaced)

            seen = [await call(client, "status") for client in (one, two)]
    for status in seen:
        assert status["state"] == "ready" and status["model"]["id"] == "fake-b" and status["job"] is None
        assert status["last_switch"]["id"] == forced["id"]
    assert seen[0]["daemon"]["pid"] == seen[1]["daemon"]["pid"] == daemon.hello["pid"]
    assert len(mcp_setup.containers()) == 1


async def test_a_restarted_daemon_is_found_again_without_restarting_serve(
        daemon: DaemonClient, mcp_setup: Setup) -> None:
    with anyio.fail_after(90):
        async with serve(mcp_setup) as client:
            await call(client, "switch_model", {"model": "fake-a"})
            before = await call(client, "status")
            old_pid = before["daemon"]["pid"]
            os.kill(old_pid, signal.SIGTERM)
            while daemon_pid(mcp_setup) == old_pid:
                await anyio.sleep(0.05)
            after = await call(client, "status")  # autostarts a new daemon, which adopts the model
            assert after["daemon"]["pid"] not in (None, old_pid)
            while after["state"] != "ready":
                await anyio.sleep(0.1)
                after = await call(client, "status")
    assert after["model"]["id"] == "fake-a"
    assert after["container"]["id"] == before["container"]["id"], "adopted, not reloaded"


async def test_http_transport_serves_mcp_on_loopback(daemon: DaemonClient, mcp_setup: Setup) -> None:
    port = free_port()
    env = {**os.environ, **serve_env(mcp_setup)}
    async with await anyio.open_process([str(LLM_MCP), "serve", "--transport", "http", "--port", str(port)],
                                        env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL) as process:
        try:
            with anyio.fail_after(30):
                while True:
                    try:
                        await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                        break
                    except OSError:
                        await anyio.sleep(0.05)
                async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
                    assert [t.name for t in (await client.list_tools()).tools] == TOOLS
                    status = await call(client, "status")
            assert status["state"] == "stopped"
        finally:
            process.terminate()
            await process.wait()


def test_http_transport_refuses_a_non_loopback_host_unless_allowed(mcp_setup: Setup) -> None:
    done = subprocess.run([str(LLM_MCP), "serve", "--transport", "http", "--host", "0.0.0.0"],
                          env={**os.environ, **serve_env(mcp_setup)}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr and done.stdout == ""
