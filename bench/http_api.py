"""What the HTTP API's own layer costs: GET /status requests per second, latency, and idle CPU.

    .venv/bin/python bench/http_api.py [--seconds 5] [--connections 8] [--impl FILE.py ...]

A benchmark, not a test. The server runs in a subprocess (`serve_http` with a
stand-in daemon that answers a fixed ~3 KB status, so the numbers are the HTTP
stack's, not the core's); this process is the client: raw keep-alive sockets,
a minimal response reader. Reports, per implementation:

  - requests/s with `--connections` concurrent keep-alive connections, and the
    server's CPU time per request (steadier than requests/s on a busy machine);
  - p50/p99 latency with one connection;
  - the server's CPU while idle (no requests), in % of one core.

`--impl` takes other files that define `serve_http(daemon, host, port, *, task_status)`
(an older implementation kept aside, say) to measure in the same run; the
default is llm_mcp.daemon.http_api.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUEST = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"


class FixedStatus:
    """A stand-in daemon: status and list_models answer at once with fixed, realistic payloads."""

    def __init__(self) -> None:
        model = {"id": "qwen", "name": "Qwen", "state": "ready", "since": 1.7e9, "reason": None,
                 "engine": "local", "gpus": "all", "exclusive": False, "port": 8080,
                 "endpoint": "http://127.0.0.1:8080", "health": "ok", "speed": {"measured_tps": 41.2},
                 "profile": {"id": "qwen", "ctx_size": 32768, "flags": "-fa on " * 20}}
        self.status = {"instance": "bench", "state": "ready", "models": [model, {**model, "id": "embed"}],
                       "jobs": [], "primary": "qwen", "job": None, **model,
                       "system": {"cpu": [12.5] * 16, "memory": {"total": 1 << 37, "used": 1 << 35}}}

    async def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        return self.status if method == "status" else {"models": []}


def serve(impl: str | None) -> None:
    import anyio

    if impl:
        spec = importlib.util.spec_from_file_location("bench_http_impl", impl)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        serve_http = module.serve_http
    else:
        from llm_mcp.daemon.http_api import serve_http

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_http, FixedStatus(), "127.0.0.1", 0)
            print(port, flush=True)

    anyio.run(main)


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected reply: {head[:80]!r}")


async def throughput(port: int, connections: int, seconds: float) -> tuple[float, int]:
    done = 0
    until = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < until:
            await _one(reader, writer)
            done += 1
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - began), done


async def latency(port: int, count: int) -> tuple[float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await _one(reader, writer)
        samples.append(time.perf_counter() - began)
    writer.close()
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(0.99 * (len(samples) - 1))] * 1000


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure(impl: str | None, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--serve", *(["--impl", impl] if impl else [])]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        asyncio.run(latency(port, 50))  # warm up
        before = cpu_seconds(server.pid)
        time.sleep(args.idle_seconds)
        idle = 100 * (cpu_seconds(server.pid) - before) / args.idle_seconds
        before = cpu_seconds(server.pid)
        rps, done = asyncio.run(throughput(port, args.connections, args.seconds))
        per_request = (cpu_seconds(server.pid) - before) / done
        p50, p99 = asyncio.run(latency(port, args.latency_requests))
    finally:
        server.terminate()
        server.wait(10)
    return {"impl": impl or "llm_mcp.daemon.http_api", "requests_per_s": round(rps),
            "server_cpu_us_per_request": round(per_request * 1e6),
            "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "idle_cpu_percent": round(idle, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", action="append", default=[],
                        help="another serve_http to measure (a .py file)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.impl[0] if args.impl else None)
        return 0
    results = [measure(impl, args) for impl in [None, *args.impl]]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['impl']}: {r['requests_per_s']} req/s ({args.connections} connections, "
                  f"server CPU {r['server_cpu_us_per_request']} us/request), "
                  f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (1 connection), "
                  f"idle CPU {r['idle_cpu_percent']} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
