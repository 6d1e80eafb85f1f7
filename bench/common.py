"""What the benches that run a daemon on Docker share: a tiny-model tree, a free port, clean-up."""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_tree(root: Path) -> Path:
    """`root/models` with the demo's tiny GGUF models and `root/compose/compose.yaml` (the CPU
    variant); returns the models folder, for models.conf's models_dir."""
    from llm_mcp.demo.tiny_model import main as make_models

    models = root / "models"
    models.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        make_models([str(models)])
    (root / "compose").mkdir()
    shutil.copy(ROOT / "compose" / "compose.cpu.yaml", root / "compose" / "compose.yaml")
    return models


def stop_child(child: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (the daemon stops, its models keep running), then kill after `timeout` seconds."""
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()


def remove_containers(instance: str) -> None:
    """Every container of this llm-mcp instance, whatever state it is in."""
    from llm_mcp.config.compose import LABEL_INSTANCE

    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL_INSTANCE}={instance}"],
                         capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
