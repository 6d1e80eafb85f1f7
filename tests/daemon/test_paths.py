"""Default locations without XDG_RUNTIME_DIR (root shells, CI, containers): no warning, a private dir."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Setup

NOBODY = pwd.getpwnam("nobody").pw_uid


def _env_without_runtime_dir(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "LLM_MCP_SOCKET")}
    return {**env, "TMPDIR": str(tmp_path), "PYTHONWARNINGS": "error", **extra}


def test_without_xdg_runtime_dir_the_socket_lives_in_a_per_user_tmp_dir_and_nothing_warns(
        tmp_path: Path) -> None:
    env = _env_without_runtime_dir(tmp_path, LLM_MCP_CONFIG=str(tmp_path / "missing.conf"),
                                   LLM_MCP_STATE_DIR=str(tmp_path / "state"))
    where = subprocess.run([sys.executable, "-W", "error", "-c",
                            "from llm_mcp.config import paths; print(paths.socket_path())"],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert where.returncode == 0 and where.stderr == "", where.stderr
    assert where.stdout.strip() == str(tmp_path / f"llm-mcp-{os.geteuid()}" / "daemon.sock")

    # A whole command: the client finds no daemon, starts one (it fails on the missing config).
    done = subprocess.run([sys.executable, "-W", "error", "-m", "llm_mcp", "models"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "missing.conf" in done.stderr
    start_log = (tmp_path / "state" / "daemon-start.log").read_text()
    assert "Warning" not in start_log and "Traceback" not in start_log, start_log
    runtime = tmp_path / f"llm-mcp-{os.geteuid()}"
    assert runtime.is_dir() and runtime.stat().st_mode & 0o777 == 0o700


@pytest.mark.docker
def test_a_default_runtime_dir_planted_by_another_user_is_refused(setup: Setup, tmp_path: Path) -> None:
    planted = tmp_path / f"llm-mcp-{os.geteuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, NOBODY, -1)
    env = _env_without_runtime_dir(tmp_path, LLM_MCP_CONFIG=str(setup.config_path),
                                   LLM_MCP_STATE_DIR=str(setup.state_dir))
    done = subprocess.run([sys.executable, "-m", "llm_mcp", "models"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 4, done.stderr
    assert f"belongs to uid {NOBODY}" in done.stderr and "Traceback" not in done.stderr
    assert list(planted.iterdir()) == []
