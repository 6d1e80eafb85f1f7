"""The pre-flight as each front end shows it, against a real daemon (its own memory view: this
machine's RAM through psutil, the container's processes through Docker; no NVML here).

A profile whose header-only model needs more RAM than the machine has: `models` marks it,
`switch` exits 5 with the numbers, HTTP answers 507, MCP's switch_model is a tool error with the
numbers, list_models carries the verdict; the running model keeps answering throughout.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import TextContent

from llm_mcp.clients.client import DaemonClient
from llm_mcp.clients.mcp_server import make_server
from llm_mcp.demo.shaped_model import write_header_only_model
from tests.conftest import FAKE_IMAGE, Setup, free_port
from tests.daemons import Daemons, cli
from tests.preflight.test_switch_preflight import HOST_SHAPE

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

PROFILES = f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}

[huge]
name = Huge
model = host-37g.gguf
image = {FAKE_IMAGE}
ctx_size = 4096
n_gpu_layers = 0
"""


@pytest.fixture
def front_setup(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[tuple[Setup, Daemons]]:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(models_dir / "tiny-a.gguf", models / "tiny-a.gguf")
    write_header_only_model(models / "host-37g.gguf", HOST_SHAPE, n_vocab=32000)
    s = Setup(tmp_path, models)
    s.write(PROFILES)
    d = Daemons(s)
    yield s, d
    d.cleanup()
    s.cleanup()


async def test_every_front_end_refuses_a_model_that_does_not_fit_with_the_numbers_and_the_model_runs_on(
    front_setup: tuple[Setup, Daemons],
) -> None:
    s, daemons = front_setup
    port = free_port()
    daemons.start("--http", f"127.0.0.1:{port}")
    assert cli(s, "switch", "fake-a").returncode == 0

    listed = cli(s, "models")
    assert listed.returncode == 0, listed.stderr
    assert "FIT" in listed.stdout.splitlines()[0]
    huge_row = next(ln for ln in listed.stdout.splitlines() if ln.split()[:1] == ["huge"]
                    or ln.split()[:2] == ["*", "huge"])
    assert "WON'T FIT" in huge_row
    assert "huge: does not fit: needs" in listed.stdout and "on host" in listed.stdout

    started = time.monotonic()
    refused = cli(s, "switch", "huge")
    took = time.monotonic() - started
    assert refused.returncode == 5, (refused.stdout, refused.stderr)
    assert "does not fit: needs" in refused.stderr and "on host" in refused.stderr
    assert "counting the" in refused.stderr and "that Fake A holds" in refused.stderr
    assert "llm-mcp fit huge --suggest" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    as_json = cli(s, "switch", "huge", "--json")
    assert as_json.returncode == 5
    error = json.loads(as_json.stdout)["error"]
    assert error["reason"] == "wont_fit" and error["fit"]["verdict"] == "wont_fit"
    host = error["fit"]["devices"][0]
    assert host["device"] == "host" and host["need_bytes"] > host["free_bytes"] > 0
    print(f"CLI `switch huge` refused in {took * 1000:.0f} ms (a whole process start included)")

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        response = await http.post("/switch", json={"model": "huge"})
        assert response.status_code == 507, response.text
        body = response.json()["error"]
        assert body["reason"] == "wont_fit" and "does not fit" in body["message"]
        assert body["fit"]["devices"][0]["need_bytes"] == host["need_bytes"]
        status = (await http.get("/status")).json()
        assert status["state"] == "ready" and status["profile"]["id"] == "fake-a"
        assert (await http.get(f"{status['endpoint']}/health")).status_code == 200
        models = (await http.get("/models")).json()["models"]
        assert {m["id"]: m["fit"]["verdict"] for m in models} == {"fake-a": "fits", "huge": "wont_fit"}

    socket = Path(s.env()["LLM_MCP_SOCKET"])
    async with DaemonClient(socket, config_path=s.config_path, name="test") as daemon:
        async with Client(make_server(daemon)) as mcp:
            with anyio.fail_after(30):
                result = await mcp.call_tool("switch_model", {"model": "huge"})
            assert result.is_error
            text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
            assert "[reason: wont_fit]" in text and "host: needs" in text and "GiB free -> wont_fit" in text
            assert "force=true" in text
            print(text)
            listing = await mcp.call_tool("list_models", {})
            assert listing.structured_content is not None
            fits = {m["id"]: m["fit"] for m in listing.structured_content["models"]}
            assert fits["huge"]["verdict"] == "wont_fit" and fits["fake-a"]["verdict"] == "fits"
            assert fits["huge"]["devices"][0]["device"] == "host"
        status = await daemon.call("status", gpu=False)
        assert status["state"] == "ready" and status["profile"]["id"] == "fake-a"
        assert status["last_switch"]["profile"] == "fake-a"  # no job ever started for huge
