"""Every kind of client on one daemon driving the REAL llama-server.

Two `llm-mcp serve` processes (two Claude Code sessions), an event subscriber
(what the monitor is) and the CLI race for the model. The tiny model loads in
milliseconds, so the switch is held in flight the way it is in real life: the
running server is busy generating, and the job drains it first.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import CallToolResult

from llm_mcp.clients.client import DaemonClient
from tests.conftest import REAL_IMAGE, Setup
from tests.mcp.conftest import LLM_MCP, serve_env
from tests.mcp.test_serve_process import call, serve, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]

PROFILES = f"""
[real-a]
name = Real A
model = tiny-a.gguf
image = {REAL_IMAGE}
ctx_size = 2048
n_gpu_layers = 0
flags = --threads 1 --parallel 1 --no-warmup
verify = false

[real-b]
name = Real B
model = tiny-b.gguf
image = {REAL_IMAGE}
ctx_size = 256
n_gpu_layers = 0
flags = --threads 1 --parallel 1 --no-warmup
drain_timeout = 60
verify = false
"""


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([str(LLM_MCP), *args], env={**os.environ, **serve_env(setup)},
                          capture_output=True, text=True, timeout=60, check=False)


async def test_serve_processes_a_subscriber_and_the_cli_share_one_real_server_and_its_rules(
        daemon: DaemonClient, mcp_setup: Setup, real_image: str) -> None:
    mcp_setup.write(PROFILES)  # the daemon reads models.conf on every request
    first = await daemon.call("switch", model="real-a", wait=True, timeout=60)
    assert first["result"] == "ready", first
    endpoint = (await daemon.call("status", gpu=False))["endpoint"]

    events: list[dict[str, Any]] = []
    results: dict[str, CallToolResult] = {}

    async def subscriber() -> None:
        async with DaemonClient(daemon.socket_path, name="subscriber") as sub:
            async for event in sub.events(["state", "job"]):
                events.append(event)

    async def generate(http: httpx.AsyncClient) -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000,
                "temperature": 0, "ignore_eos": True}
        await http.post(f"{endpoint}/v1/chat/completions", json=body, timeout=60)

    async def switch(name: str, client: Any, args: dict[str, Any]) -> None:
        results[name] = await client.call_tool("switch_model", args)

    with anyio.fail_after(120):
        async with serve(mcp_setup) as one, serve(mcp_setup) as two, \
                httpx.AsyncClient() as http, anyio.create_task_group() as tg:
            tg.start_soon(subscriber)
            # Two long generations on a one-slot server: busy for a few seconds.
            tg.start_soon(generate, http)
            tg.start_soon(generate, http)
            while not any(s.get("is_processing") for s in (await http.get(f"{endpoint}/slots")).json()):
                await anyio.sleep(0.02)

            async with anyio.create_task_group() as switches:
                switches.start_soon(switch, "one", one, {"model": "real-b"})
                while (job := (await daemon.call("status", gpu=False))["job"]) is None:
                    await anyio.sleep(0.02)
                switches.start_soon(switch, "two", two, {"model": "real-b"})  # joins
                refused = await anyio.to_thread.run_sync(cli, mcp_setup, "switch", "real-a", "--json")
                still = (await daemon.call("status", gpu=False))["job"]
            assert still is not None and still["id"] == job["id"], "the CLI ran while the job was in flight"
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert job["id"] in refused.stdout + refused.stderr

            finals = [await call(one, "status"), await call(two, "status")]
            cli_status = json.loads(cli(mcp_setup, "status", "--json").stdout)
            with anyio.fail_after(5):
                while not any(e["topic"] == "job" and e["data"].get("result") == "ready"
                              and e["data"]["id"] == job["id"] for e in events):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()

    by_one, by_two = results["one"].structured_content, results["two"].structured_content
    assert by_one is not None and by_two is not None, text_of(results["one"]) + text_of(results["two"])
    assert by_one["id"] == by_two["id"] == job["id"], "the second request joined the first"
    assert by_one["result"] == by_two["result"] == "ready"
    assert "draining" in [p["phase"] for p in by_one["phases"]]
    for status in finals:
        assert status["state"] == "ready" and status["model"]["id"] == "real-b"
    assert cli_status["state"] == "ready" and cli_status["profile"]["id"] == "real-b"
    last_state = [e["data"] for e in events if e["topic"] == "state" and "state" in e["data"]][-1]
    assert last_state["state"] == "ready" and last_state["profile"] == "real-b"
    assert len(mcp_setup.containers()) == 1
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{endpoint}/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
    assert answer.status_code == 200 and answer.json()["choices"]
