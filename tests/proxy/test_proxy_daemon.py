"""The endpoint as a user meets it: `llm-mcp daemon` (a real process) with `[proxy] listen` in
models.conf, the CLI saying where it serves, the openai SDK loading a model through it, and `ps`
showing the model with its requests back to 0 and its ttl counting down."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Setup, free_port
from tests.daemons import Daemons, cli
from tests.proxy.conftest import PROXY_FAKES

pytestmark = [pytest.mark.docker]

def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    return done.stdout


def _with_proxy(port: int) -> str:
    # fake-b idles out after ten minutes: the ttl the CLI counts down
    profiles = PROXY_FAKES.replace("flags = --fake-load-seconds 0.5 --fake-tps 200",
                                   "flags = --fake-load-seconds 0.5 --fake-tps 200\nttl = 600")
    assert profiles != PROXY_FAKES
    return profiles + f"\n[proxy]\nlisten = 127.0.0.1:{port}\n"


@pytest.fixture
def daemons(setup: Setup) -> Iterator[Daemons]:
    d = Daemons(setup)
    yield d
    d.cleanup()


def test_the_daemon_serves_the_endpoint_and_the_cli_shows_its_requests(
        setup: Setup, daemons: Daemons) -> None:
    port = free_port()
    setup.write(_with_proxy(port))
    daemons.start()
    base = f"http://127.0.0.1:{port}"

    status = _ok(cli(setup, "status"))
    assert f"endpoint:   {base}/v1 (OpenAI and Anthropic; any model, loaded on demand)" in status
    raw = json.loads(_ok(cli(setup, "status", "--json")))
    assert raw["proxy"] == {"address": f"127.0.0.1:{port}", "error": None, "url": f"{base}/v1"}

    checks = json.loads(cli(setup, "check", "--json").stdout)["checks"]
    assert {"check": "proxy", "level": "ok", "fix": "",
            "message": f"the model endpoint is served on {base}/v1 (the daemon answers there)"} in checks

    listed = httpx.get(f"{base}/v1/models", timeout=30).json()
    ids = {m["id"]: m for m in listed["data"]}
    assert {"fake-a", "fake-b", "fake-oom", "gpt-a"} <= set(ids)
    assert ids["fake-b"]["state"] == "stopped"

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=120)
    try:
        answer = client.chat.completions.create(
            model="fake-b", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    finally:
        client.close()
    assert answer.choices[0].message.content

    lines = _ok(cli(setup, "ps")).splitlines()
    assert lines[0].split() == ["ID", "ENGINE", "GPUS", "STATE", "MEMORY", "REQ", "TTL", "SERVER", "UPTIME"]
    row = next(line.split() for line in lines[1:] if line.startswith("fake-b "))
    assert row[3] == "ready" and row[5] == "-"  # requests: none in flight, none queued
    assert row[6].endswith(("m", "s")) and row[6] != "busy"  # e.g. 9m58s left of the ttl
    assert max(map(len, lines)) <= 80
    model = next(m for m in json.loads(_ok(cli(setup, "ps", "--json"))) if m["id"] == "fake-b")
    assert model["requests"] == {"in_flight": 0, "queued": 0}
    assert model["ttl"]["seconds"] == 600 and 0 < model["ttl"]["remaining"] <= 600

    status = _ok(cli(setup, "status"))
    assert "ttl:        " in status and "left (unloaded after 10m00s idle)" in status
    assert "requests:" not in status  # none now


def test_a_port_in_use_is_reported_not_fatal(setup: Setup, daemons: Daemons) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup.write(_with_proxy(port))
        daemons.start()
        status = _ok(cli(setup, "status"))
    assert f"endpoint:   NOT SERVED: cannot serve the model endpoint on 127.0.0.1:{port}" in status
    assert "fix [proxy] listen in models.conf" in status


# ---- the MCP status summary, from dicts --------------------------------------------------

SERVED = {"address": "127.0.0.1:8090", "error": None, "url": "http://127.0.0.1:8090/v1"}
BUSY = {"id": "qwen", "name": "Qwen", "state": "ready", "engine": "local", "gpus": "0",
        "endpoint": "http://127.0.0.1:8080", "requests": {"in_flight": 2, "queued": 1},
        "ttl": {"seconds": 300.0, "remaining": None}, "preload": True,
        "profile": {"id": "qwen", "name": "Qwen"}}
IDLE = {"id": "embed", "name": "Embed", "state": "ready", "engine": "local", "gpus": "none",
        "endpoint": "http://127.0.0.1:49153", "requests": {"in_flight": 0, "queued": 0},
        "ttl": {"seconds": 300.0, "remaining": 252.4}}


def test_the_mcp_summary_names_the_endpoint_and_each_models_requests_and_ttl() -> None:
    from llm_mcp.clients.mcp_server import status_summary

    lines = status_summary({"state": "ready", "models": [BUSY, IDLE], "proxy": SERVED}).splitlines()
    assert lines[1].endswith("; requests 2 in flight, 1 queued; ttl 5m00s idle (paused while requests "
                             "run); preloaded at daemon start")
    assert lines[2].endswith("· http://127.0.0.1:49153; ttl 4m12s left of 5m00s idle")
    assert lines[-1] == ("endpoint: http://127.0.0.1:8090/v1 (OpenAI and Anthropic APIs for every model; "
                         "a request naming a model loads it on demand)")
    one = status_summary({"state": "ready", "profile": BUSY["profile"], "endpoint": BUSY["endpoint"],
                          "container": {"id": "c"}, "models": [BUSY], "proxy": SERVED}).splitlines()
    assert one[0].startswith("ready: Qwen (qwen) at http://127.0.0.1:8080 (engine local, gpus 0); "
                             "requests 2 in flight, 1 queued")
    assert one[1].startswith("endpoint: http://127.0.0.1:8090/v1")
    failed = status_summary({"state": "stopped", "models": [], "proxy": {
        "address": None, "url": None, "error": "cannot serve the model endpoint on 127.0.0.1:8090: in use"}})
    assert failed.splitlines() == ["stopped: no model loaded", "endpoint NOT served: cannot serve the model "
                                   "endpoint on 127.0.0.1:8090: in use"]
    assert "\n" not in status_summary({"state": "stopped", "models": [], "proxy": {"address": None}})
