"""Ask a daemon's socket `hello` without an event loop (`llm-mcp daemon` asks the one it found)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from llm_mcp import protocol
from llm_mcp.protocol import ProtocolError
from llm_mcp.util.safe_files import socket_problem


def hello_sync(socket_path: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The running daemon's `hello`. OSError when the socket is not ours or does not answer."""
    problem = socket_problem(socket_path, os.lstat(socket_path))
    if problem is not None:
        raise PermissionError(problem)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(protocol.request(1, "hello", {"protocol": protocol.PROTOCOL_VERSION,
                                                   "client": "llm-mcp daemon"}))
        data = b""
        while not data.endswith(b"\n"):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    message = json.loads(data)
    if "error" in message:
        err = message["error"]
        raise ProtocolError(int(err.get("code", protocol.INTERNAL_ERROR)), str(err.get("message")))
    result = message.get("result")
    return result if isinstance(result, dict) else {}
