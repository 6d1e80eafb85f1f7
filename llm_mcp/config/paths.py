"""Where things live: a flag first, then an environment variable, then a default.

Every default is computed when asked for, never at import, and never through
platformdirs' runtime dir: without XDG_RUNTIME_DIR (root shells, CI, containers)
it warns (RuntimeDirWarning) on every call.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "llm-mcp"


def config_path(flag: str | None = None) -> Path:
    if flag:
        return Path(flag).expanduser().resolve()
    if env := os.environ.get("LLM_MCP_CONFIG"):
        return Path(env).expanduser().resolve()
    local = Path.cwd() / "models.conf"
    if local.is_file():
        return local.resolve()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP)) / "models.conf"


def state_dir() -> Path:
    if env := os.environ.get("LLM_MCP_STATE_DIR"):
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_state_dir(APP))


def runtime_dir() -> Path:
    """The default socket's directory.

    $XDG_RUNTIME_DIR/llm-mcp when the session has one (per user, 0700, emptied at
    logout). Without it, /tmp/llm-mcp-UID (or under $TMPDIR): one per user, so
    users never share it, and a directory someone else planted there is refused,
    not used: the daemon creates it 0700 and checks it is a real directory of its
    own (safe_files.private_dir), and clients check the socket's owner before
    talking to it.
    """
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / APP
    return Path(os.environ.get("TMPDIR") or "/tmp") / f"{APP}-{os.geteuid()}"  # noqa: S108 - see above


def socket_path(flag: str | None = None) -> Path:
    if flag:
        return Path(flag).expanduser().resolve()
    if env := os.environ.get("LLM_MCP_SOCKET"):
        return Path(env).expanduser().resolve()
    return runtime_dir() / "daemon.sock"
