"""How fast do clients reach the daemon, and how fast does `llm-mcp serve` start?

    .venv/bin/python bench/latency.py [--socket-calls 500] [--mcp-calls 200] [--starts 5]

A benchmark, not a test. Starts a daemon for a temporary models.conf (one fake
profile, no model loaded) the way every client does (autostart), then measures:

  - `status` round trips through the socket (DaemonClient), p50/p99;
  - `status` tool calls through MCP stdio (an mcp.Client over an `llm-mcp serve`
    subprocess), p50/p99;
  - `llm-mcp serve` cold start: spawn, initialize, `tools/list` answered; a fresh
    process each time, the daemon already running; the median;
  - for context, a bare `python -c pass` and `python -c "import mcp"` on this machine.

Targets: p50 <= 5 ms via the socket, <= 15 ms via MCP stdio, cold start <= 1 s.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from llm_mcp.clients.client import DaemonClient

ROOT = Path(__file__).resolve().parent.parent
LLM_MCP = ROOT / ".venv" / "bin" / "llm-mcp"
PYTHON = ROOT / ".venv" / "bin" / "python"


def write_config(root: Path) -> dict[str, str]:
    config = root / "models.conf"
    config.write_text(
        f"[defaults]\ninstance = bench{uuid.uuid4().hex[:8]}\nmodels_dir = {root}\n\n"
        "[fake]\nname = Fake\nmodel = none.gguf\nimage = llm-mcp-test/fake-llama-server:latest\n",
        encoding="utf-8")
    return {"LLM_MCP_CONFIG": str(config), "LLM_MCP_STATE_DIR": str(root / "state"),
            "LLM_MCP_SOCKET": str(root / "d.sock")}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def process_start(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


Row = tuple[str, float, float | None, float]  # what, p50, p99 (or max), target


async def bench(args: argparse.Namespace, env: dict[str, str]) -> list[Row]:
    params = StdioServerParameters(command=str(LLM_MCP), args=["serve"], env=env)
    async with DaemonClient(Path(env["LLM_MCP_SOCKET"]), config_path=Path(env["LLM_MCP_CONFIG"])) as daemon:
        try:
            await daemon.call("status")  # autostarts the daemon
            await timed(20, lambda: daemon.call("status"))
            socket_times = await timed(args.socket_calls, lambda: daemon.call("status"))

            async with Client(params, mode="legacy") as client:
                await timed(10, lambda: client.call_tool("status", {}))
                mcp_times = await timed(args.mcp_calls, lambda: client.call_tool("status", {}))

            starts = []
            for _ in range(args.starts):
                start = time.perf_counter()
                async with Client(params, mode="legacy") as client:
                    await client.list_tools()
                    starts.append(time.perf_counter() - start)
        finally:
            pid = daemon.hello.get("pid")
            if pid:
                os.kill(int(pid), signal.SIGTERM)
    return [
        ("status via the socket (DaemonClient)", statistics.median(socket_times),
         percentile(socket_times, 0.99), 0.005),
        ("status via MCP stdio (llm-mcp serve)", statistics.median(mcp_times),
         percentile(mcp_times, 0.99), 0.015),
        ("serve cold start to tools/list (median)", statistics.median(starts), max(starts), 1.0),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket-calls", type=int, default=500)
    parser.add_argument("--mcp-calls", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="llm-mcp-bench-"))
    env = write_config(root)
    os.environ.update(env)  # the autostarted daemon and its log live in the temp dir
    try:
        rows = anyio.run(bench, args, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bare = process_start([str(PYTHON), "-c", "pass"], args.starts)
    import_mcp = process_start([str(PYTHON), "-c", "import mcp.server"], args.starts)

    print(f"{'what':44} {'p50/median':>11} {'p99/max':>9} {'target':>8}  ok")
    ok = True
    for name, p50, p99, target in rows:
        hit = p50 <= target
        ok &= hit
        tail = f"{p99 * 1000:7.1f}ms" if p99 is not None else ""
        print(f"{name:44} {p50 * 1000:9.1f}ms {tail:>9} {target * 1000:6.0f}ms  {'yes' if hit else 'NO'}")
    print(f"{'context: python -c pass (median)':44} {bare * 1000:9.1f}ms")
    label = 'context: python -c "import mcp.server"'
    print(f"{label:44} {import_mcp * 1000:9.1f}ms")
    print(f"({args.socket_calls} socket calls, {args.mcp_calls} MCP calls, {args.starts} cold starts; "
          f"{os.cpu_count()} CPUs)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
