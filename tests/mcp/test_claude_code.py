"""Claude Code itself (the real CLI) registers `llm-mcp serve` as the docs say, and connects.

tests/mcp/install_claude_code.sh installs it (scripts/test.sh runs that). Without it the tests
skip, except under CI (CI=true), where a missing Claude Code is a failure. `claude mcp add` and
`claude mcp list` (which starts the server and health-checks it) work offline. Each test gives
Claude Code a HOME of its own and a PATH without the venv, as a user's login shell has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_mcp.clients.client import DaemonClient
from tests.conftest import ROOT, Setup
from tests.mcp.conftest import serve_env

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

CLAUDE_DIR = Path(os.environ.get("LLM_MCP_CLAUDE_DIR") or Path(
    os.environ.get("LLM_MCP_CACHE") or Path.home() / ".cache" / "llm-mcp") / "claude-code")
CLAUDE = CLAUDE_DIR / "node_modules" / ".bin" / "claude"
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # no .venv/bin: Claude Code does not inherit an activated venv


@pytest.fixture(scope="module")
def claude() -> Path:
    if not os.access(CLAUDE, os.X_OK) or shutil.which("node", path=PLAIN_PATH) is None:
        why = f"Claude Code is not installed in {CLAUDE_DIR}: run tests/mcp/install_claude_code.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return CLAUDE


def run_claude(claude: Path, home: Path, cwd: Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    return subprocess.run([str(claude), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": PLAIN_PATH, "HOME": str(home), **(env or {})})


def printed_registration(setup: Setup) -> list[str]:
    """The `claude mcp add` line `llm-mcp check` prints for this setup."""
    env = {**os.environ, **serve_env(setup)}
    done = subprocess.run([sys.executable, "-m", "llm_mcp", "check", "--json"], env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    argv = json.loads(done.stdout)["claude_code"]["argv"]
    assert isinstance(argv, list)
    human = subprocess.run([sys.executable, "-m", "llm_mcp", "check"], env=env, text=True,
                           capture_output=True, timeout=120, check=False).stdout
    assert json.loads(done.stdout)["claude_code"]["command"] in human  # the same line, ready to paste
    return [str(arg) for arg in argv]


async def test_the_registration_check_prints_is_connected_in_claude_code(
        claude: Path, daemon: DaemonClient, mcp_setup: Setup, tmp_path: Path) -> None:
    argv = printed_registration(mcp_setup)
    assert argv[:3] == ["claude", "mcp", "add"]
    name = argv.index("llm")
    assert argv.index("-e") > name  # the name before -e, which takes several values
    command = argv[argv.index("--") + 1:]
    assert Path(command[0]).is_absolute() and command[-1] == "serve"
    assert command[command.index("--config") + 1] == str(mcp_setup.config_path)
    assert f"LLM_MCP_SOCKET={serve_env(mcp_setup)['LLM_MCP_SOCKET']}" in argv
    assert f"LLM_MCP_STATE_DIR={mcp_setup.state_dir}" in argv

    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    added = run_claude(claude, home, project, *argv[1:])
    assert added.returncode == 0, added.stdout + added.stderr
    listed = run_claude(claude, home, project, "mcp", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("llm: "))
    assert "✔ Connected" in line, listed.stdout


async def test_a_local_scope_registration_with_env_is_connected(
        claude: Path, daemon: DaemonClient, mcp_setup: Setup, tmp_path: Path) -> None:
    argv = printed_registration(mcp_setup)
    env_args = argv[argv.index("llm") + 1:argv.index("--")]
    command = argv[argv.index("--") + 1:]
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    added = run_claude(claude, home, project, "mcp", "add", "--scope", "local", "llm-test", *env_args, "--",
                       *command)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = run_claude(claude, home, project, "mcp", "list")
    assert "llm-test: " in listed.stdout and "✔ Connected" in listed.stdout, listed.stdout + listed.stderr


async def test_the_old_documented_forms_fail_as_the_docs_now_warn(
        claude: Path, mcp_setup: Setup, tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    env_first = run_claude(claude, home, project, "mcp", "add", "--scope", "user", "-e", "K=V", "llm", "--",
                           "llm-mcp", "serve")
    assert env_first.returncode != 0 and "environment variable" in env_first.stderr + env_first.stdout
    bare = run_claude(claude, home, project, "mcp", "add", "--scope", "local", "bare", "--", "llm-mcp",
                      "serve")
    assert bare.returncode == 0
    listed = run_claude(claude, home, project, "mcp", "list")
    assert "bare: " in listed.stdout and "Connected" not in listed.stdout.split("bare: ", 1)[1]


async def test_the_repos_mcp_json_is_connected_when_claude_code_starts_in_the_repo(
        claude: Path, daemon: DaemonClient, mcp_setup: Setup, tmp_path: Path) -> None:
    """A checkout: the repo's .mcp.json, its .venv, and models.conf at the top (a link here)."""
    checkout, home = tmp_path / "checkout", tmp_path / "home"
    checkout.mkdir()
    shutil.copy(ROOT / ".mcp.json", checkout / ".mcp.json")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    (checkout / "models.conf").symlink_to(mcp_setup.config_path)
    home.mkdir()
    # What answering "use this MCP server" in an interactive `claude` records (stand-in for the prompt).
    (home / ".claude.json").write_text(json.dumps({"projects": {str(checkout): {
        "hasTrustDialogAccepted": True, "enabledMcpjsonServers": ["llm"]}}}), encoding="utf-8")
    listed = run_claude(claude, home, checkout, "mcp", "list", env=serve_env(mcp_setup))
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("llm: "))
    assert line.startswith("llm: .venv/bin/llm-mcp serve") and "✔ Connected" in line, listed.stdout
