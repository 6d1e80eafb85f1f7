"""Where things live: a flag first, then an environment variable, then a default."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "llm-mcp"


def config_path(flag: str | None = None) -> Path:
    if flag:
        return Path(flag).expanduser().resolve()
    if env := os.environ.get("LLM_MCP_CONFIG"):
        return Path(env).expanduser().resolve()
    local = Path.cwd() / "models.conf"
    if local.is_file():
        return local.resolve()
    return Path(platformdirs.user_config_dir(APP)) / "models.conf"


def state_dir() -> Path:
    if env := os.environ.get("LLM_MCP_STATE_DIR"):
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_state_dir(APP))


def socket_path(flag: str | None = None) -> Path:
    if flag:
        return Path(flag).expanduser().resolve()
    if env := os.environ.get("LLM_MCP_SOCKET"):
        return Path(env).expanduser().resolve()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / APP if runtime else Path(platformdirs.user_runtime_dir(APP))
    return base / "daemon.sock"
