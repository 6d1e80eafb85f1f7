"""The MCP Inspector CLI, a real third-party client, against `llm-mcp serve`.

tests/mcp/install_inspector.sh installs it (scripts/test.sh runs that). Without it the
tests skip, except under CI (CI=true), where a missing inspector is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llm_mcp.clients.client import DaemonClient
from tests.conftest import Setup
from tests.mcp.conftest import LLM_MCP, serve_env

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

PACKAGE = "@modelcontextprotocol/inspector"
INSPECTOR_DIR = Path(os.environ.get("LLM_MCP_INSPECTOR_DIR") or Path(
    os.environ.get("LLM_MCP_CACHE") or Path.home() / ".cache" / "llm-mcp") / "npm")


@pytest.fixture(scope="module")
def inspector() -> Path:
    installed = (INSPECTOR_DIR / "node_modules" / PACKAGE / "package.json").is_file()
    if not installed or shutil.which("npx") is None:
        why = f"the MCP Inspector is not installed in {INSPECTOR_DIR}: run tests/mcp/install_inspector.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return INSPECTOR_DIR


def run_inspector(inspector: Path, setup: Setup, *args: str) -> Any:
    env_args = [arg for key, value in serve_env(setup).items() for arg in ("-e", f"{key}={value}")]
    done = subprocess.run(
        ["npx", "--no-install", PACKAGE, "--cli", *env_args, str(LLM_MCP), "serve", *args],
        cwd=inspector, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return json.loads(done.stdout)


async def test_inspector_lists_the_tools_with_schemas_and_annotations(
        inspector: Path, daemon: DaemonClient, mcp_setup: Setup) -> None:
    listed = run_inspector(inspector, mcp_setup, "--method", "tools/list", "--strict")  # portable schemas
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert sorted(tools) == ["fit_model", "list_models", "status", "switch_model", "tail_logs",
                             "unload_model"]
    for name in ("switch_model", "unload_model"):
        assert tools[name]["inputSchema"]["required"] == ["model"]
        assert tools[name]["annotations"]["destructiveHint"] is True
        assert tools[name]["annotations"]["idempotentHint"] is True
    assert tools["status"]["annotations"]["readOnlyHint"] is True
    assert all("outputSchema" in tool for tool in tools.values())


async def test_inspector_calls_status(inspector: Path, daemon: DaemonClient, mcp_setup: Setup) -> None:
    result = run_inspector(inspector, mcp_setup, "--method", "tools/call", "--tool-name", "status")
    assert result.get("isError") in (None, False), result
    status = result["structuredContent"]
    assert status["state"] == "stopped" and status["daemon"]["pid"] == daemon.hello["pid"]


async def test_inspector_switches_a_model_with_a_tool_argument(
        inspector: Path, daemon: DaemonClient, mcp_setup: Setup) -> None:
    result = run_inspector(inspector, mcp_setup, "--method", "tools/call", "--tool-name", "switch_model",
                           "--tool-arg", "model=fake-b")
    assert result.get("isError") in (None, False), result
    assert result["structuredContent"]["result"] == "ready"
    assert (await daemon.call("status", gpu=False))["profile"]["id"] == "fake-b"
    unloaded = run_inspector(inspector, mcp_setup, "--method", "tools/call", "--tool-name", "unload_model",
                             "--tool-arg", "model=fake-b")
    assert unloaded.get("isError") in (None, False), unloaded
    stopped = unloaded["structuredContent"]
    assert stopped["result"] == "stopped" and stopped["running"] == [] and stopped["kind"] == "unload"
    assert mcp_setup.containers() == []
