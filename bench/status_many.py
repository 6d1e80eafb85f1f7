"""How fast does `status` answer with 8 models running, against 1 in the same run?

    .venv/bin/python bench/status_many.py [-n 500] [--models 8]

A benchmark, not a test. Starts a real daemon process (llm_mcp.daemon.server.Daemon on a
Unix socket, the scheduler's Core) whose containers live on the in-memory STAND-IN engine
(llm_mcp.runtime.memory): Docker's own speed is not what is measured, the core's status
over the socket is. The models.conf has N profiles that do not conflict (gpus = none,
each its own port), so all of them run at once. Then, through a DaemonClient:

  (a) baseline: one model ready; `status` round trips, p50/p95;
  (b) N models ready (switched in one by one, each stopping nothing); the same.

Prints both, the ratio (b)/(a), and the size of one status answer. Target: p50 <= 2 ms
with 8 models. Exits 1 when it is missed. Self-contained: a temporary directory holds
the config, state and socket; the daemon process is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import stop_child
from llm_mcp.clients.client import DaemonClient

ROOT = Path(__file__).resolve().parent.parent
TARGET_P50_S = 0.002


def write_config(root: Path, models: int) -> Path:
    (root / "models").mkdir()
    (root / "models" / "m.gguf").write_bytes(b"GGUF")
    (root / "compose").mkdir()
    shutil.copy(ROOT / "compose" / "compose.cpu.yaml", root / "compose" / "compose.yaml")
    profiles = "".join(f"\n[m{i}]\nname = Model {i}\nmodel = m.gguf\ngpus = none\nport = {19100 + i}\n"
                       for i in range(models))
    config = root / "models.conf"
    config.write_text(
        f"[defaults]\ninstance = bench{uuid.uuid4().hex[:8]}\nmodels_dir = {root / 'models'}\n"
        "compose_file = compose/compose.yaml\nimage = stand-in/llama-server:bench\nstop_grace = 0.1\n"
        f"{profiles}", encoding="utf-8")
    return config


def serve(root: Path) -> None:
    """The daemon process: a Core on the stand-in engine, served on root/d.sock."""
    from llm_mcp.config.models_conf import ConfigReader, load_config
    from llm_mcp.core.scheduler import Core
    from llm_mcp.daemon.server import Daemon
    from llm_mcp.runtime.memory import MemoryEngine

    config_path = root / "models.conf"
    engine = MemoryEngine()
    config = load_config(config_path)
    core = Core(load_config=ConfigReader(config_path),  # as the daemon reads it: parsed when it changed
                runtimes={"local": engine.runtime(config.instance)}, state_dir=root / "state",
                probe_factory=engine.probe, health_interval=0.01, clock=engine.clock)
    daemon = Daemon(core, root / "d.sock", None, config_path)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.serve)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    anyio.run(main)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed_status(client: DaemonClient, n: int) -> tuple[list[float], int]:
    for _ in range(20):  # warm-up
        await client.call("status")
    times = []
    size = 0
    for _ in range(n):
        start = time.perf_counter()
        answer = await client.call("status")
        times.append(time.perf_counter() - start)
        size = len(json.dumps(answer))
    return times, size


async def switch(client: DaemonClient, model: str) -> None:
    job = await client.call("switch", model=model, wait=True, timeout=30)
    if job.get("result") != "ready" or job.get("stops"):
        raise SystemExit(f"switch to {model}: {job.get('result')} (stops {job.get('stops')}): {job}")


def wait_for_socket(path: Path, daemon: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.returncode}")
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(path))
                return
            except OSError:
                time.sleep(0.05)
    raise SystemExit(f"no daemon answered on {path} within {timeout:g} s")


Row = tuple[str, list[float], int]


async def bench(root: Path, n: int, models: int) -> list[Row]:
    async with DaemonClient(root / "d.sock", autostart=False, name="bench") as client:
        await switch(client, "m0")
        one, one_size = await timed_status(client, n)
        for i in range(1, models):
            await switch(client, f"m{i}")
        status = await client.call("status")
        running = [m["id"] for m in status["models"] if m["state"] == "ready"]
        if len(running) != models:
            raise SystemExit(f"expected {models} ready models, status lists {running}")
        many, many_size = await timed_status(client, n)
    return [("status, 1 model running (baseline)", one, one_size),
            (f"status, {models} models running", many, many_size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help="status calls per measurement")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the daemon process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    root = Path(tempfile.mkdtemp(prefix="llm-mcp-bench-"))
    write_config(root, args.models)
    daemon = subprocess.Popen([sys.executable, __file__, "--serve", str(root)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for_socket(root / "d.sock", daemon)
        rows = anyio.run(bench, root, args.n, args.models)
    finally:
        stop_child(daemon, 10)
        shutil.rmtree(root, ignore_errors=True)

    print(f"{'what':40} {'p50':>8} {'p95':>8} {'answer':>9}")
    for name, times, size in rows:
        print(f"{name:40} {statistics.median(times) * 1000:6.2f}ms {percentile(times, 0.95) * 1000:6.2f}ms "
              f"{size / 1024:7.1f}KiB")
    base, many = statistics.median(rows[0][1]), statistics.median(rows[1][1])
    ok = many <= TARGET_P50_S
    print(f"ratio {args.models} models / 1 model (p50): {many / base:.2f}x; "
          f"target p50 <= {TARGET_P50_S * 1000:g} ms with {args.models}: {'yes' if ok else 'NO'}")
    print(f"({args.n} calls each; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
