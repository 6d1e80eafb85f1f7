"""What does the model endpoint (docs/proxy.md) cost a stream, against talking to llama-server directly?

    .venv/bin/python bench/proxy_overhead.py [--rounds 4] [--tokens 300] [--no-real] [--profile FILE]

A benchmark, not a test: it prints PASS/MISS per target and exits 0 (a busy machine
misses targets; the numbers say by how much). One run measures, each request sent
straight to the model's server (direct: its published port) and through the
endpoint (the same server behind POST /v1/chat/completions), rounds alternating
which goes first:

  (a) a realistic load: 1 and 16 concurrent streaming chat completions from
      - `paced`: bench/paced_upstream.py, a llama-server stand-in that writes one
        chunk per token every 5 ms per stream (200 tokens/s; the test image's fake
        sleeps and then bursts, so it cannot show a relay's pacing), and
      - `real`: the real llama-server image with the tiny model (whatever speed it has);
      delivered tokens/s through / direct (target >= 98 %) and the time to first
      token added by the endpoint, p50 (target <= 3 ms at 1 stream, <= 10 ms at 16);
  (b) headroom: `unpaced`, the same stand-in writing chunks as fast as it can, at
      1, 4 and 16 streams; the best aggregate chunks/s direct and through, and the
      endpoint's best as a multiple of (a)'s aggregate chunk rate at 16 paced streams
      (target >= 10x).

Then, to tell a request's own cost from its chunks': 16 one-token requests at once,
the endpoint's CPU per request and the TTFT p50 both ways.

Also `endpoint CPU`: the daemon process's CPU time per relayed chunk (its idle
share taken off) and its share of one core while relaying; steadier than rates on
a busy machine, and what decides whether the endpoint keeps up there.

The daemon (socket server, scheduler on Docker, endpoint) runs in a child process
as `llm-mcp daemon` runs it; this process is the client: raw sockets that count
chunks with bytes.count, so the client's cost is small and the same both ways.
`--profile FILE` runs the daemon under cProfile (CPU time) and prints where it went.

Pinning (the default with 2 CPUs or more; `--no-pin` to share them all): the model
servers' containers get the last CPU, this process and the daemon the others. On a
GPU workstation the relay runs on cores the generation does not need; on a 2-CPU
machine unpinned, every microsecond the endpoint spends is taken from the real
llama-server (a CPU-bound tiny model here), which measures the machine, not the relay.
Self-contained: a temporary models.conf, models and state; the stand-in's image
(llm-mcp-bench/paced-upstream) is built on llm-mcp-test/base:bookworm; every
container is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import remove_containers, stop_child, tiny_tree

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "llm-mcp-test/base:bookworm"
PACED_IMAGE = "llm-mcp-bench/paced-upstream:latest"
REAL_IMAGE = "llm-mcp-test/llama-server:cpu"
PACED_TPS = 200
CONTENT = b'"content":"'  # a chunk with text (llama-server's role chunk has "content":null)
CHUNK = b"data: "
FINISHED = b'"finish_reason":"length"'  # all max_tokens came (ignore_eos: no earlier stop)
TARGET_RATIO = 0.98
TARGET_TTFT_MS = {1: 3.0, 16: 10.0}
TARGET_HEADROOM = 10.0
STREAMS = (1, 16)
HEADROOM_STREAMS = (1, 4, 16)
IDLE_SECONDS = 3.0


# ---- setup -------------------------------------------------------------------------------------


def write_setup(root: Path, real_parallel: int) -> Path:
    models = tiny_tree(root)
    # gpus = none and auto ports: the three profiles do not conflict and run at once
    place = "gpus = none\nport = auto\n"
    # the stand-in ignores --parallel; said as the real server's is, the endpoint keeps as many
    # connections open to it (proxy_gate.idle_limit)
    slots = f"--parallel {max(STREAMS)}"
    config = root / "models.conf"
    config.write_text(
        f"[defaults]\ninstance = bench{uuid.uuid4().hex[:8]}\nmodels_dir = {models}\n"
        "compose_file = compose/compose.yaml\nverify = false\nstop_grace = 2\n\n"
        f"[paced]\nmodel = tiny-a.gguf\nimage = {PACED_IMAGE}\n{place}"
        f"flags = --bench-tps {PACED_TPS} {slots}\n\n"
        f"[unpaced]\nmodel = tiny-a.gguf\nimage = {PACED_IMAGE}\n{place}flags = --bench-tps 0 {slots}\n\n"
        f"[real]\nmodel = tiny-a.gguf\nimage = {REAL_IMAGE}\n{place}ctx_size = {1024 * real_parallel}\n"
        f"n_gpu_layers = 0\nflags = --threads 1 --parallel {real_parallel} --no-warmup\n",
        encoding="utf-8")
    return config


def build_paced_image() -> None:
    with tempfile.TemporaryDirectory(prefix="llm-mcp-bench-image-") as tmp:
        shutil.copy(ROOT / "bench" / "paced_upstream.py", Path(tmp) / "paced_upstream.py")
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nCOPY paced_upstream.py /usr/local/bin/paced_upstream.py\n"
            'ENTRYPOINT ["python3", "-u", "/usr/local/bin/paced_upstream.py"]\n', encoding="utf-8")
        done = subprocess.run(["docker", "build", "-q", "-t", PACED_IMAGE, tmp], capture_output=True,
                              text=True, check=False)
        if done.returncode:
            raise SystemExit(f"docker build of {PACED_IMAGE} failed: {done.stderr.strip()}")


def serve(root: Path, profile: Path | None) -> None:
    """The daemon process: socket server and scheduler on Docker, with the endpoint on a free port."""
    import anyio

    from llm_mcp.config.models_conf import ConfigReader, load_config
    from llm_mcp.core.scheduler import Core
    from llm_mcp.daemon import event_loop
    from llm_mcp.daemon.proxy import serve_proxy
    from llm_mcp.daemon.server import Daemon
    from llm_mcp.runtime.docker_engine import DockerRuntime

    config_path = root / "models.conf"
    config = load_config(config_path)
    runtimes = {name: DockerRuntime.for_settings(engine, instance=config.instance)
                for name, engine in config.engines.items()}
    core = Core(load_config=ConfigReader(config_path), runtimes=runtimes, state_dir=root / "state")
    daemon = Daemon(core, root / "d.sock", None, config_path)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.serve)
            port = await tg.start(serve_proxy, daemon, "127.0.0.1", 0)
            (root / "proxy.port").write_text(str(port), encoding="utf-8")
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    if profile is None:
        event_loop.run(main)  # the loop `llm-mcp daemon` runs on
        return
    import cProfile

    profiler = cProfile.Profile(time.process_time)  # CPU time: wall time would count the waits for a core
    profiler.enable()
    try:
        event_loop.run(main)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


# ---- the client ---------------------------------------------------------------------------------


@dataclass
class Stream:
    sent: float
    tokens: int  # asked for, and delivered when `finished` (the real server's chunks can hold several)
    first: float | None = None  # the first chunk with text
    done: float = 0.0
    chunks: int = 0
    finished: bool = False


async def one_stream(port: int, model: str, tokens: int) -> Stream:
    """One streaming chat completion on its own connection, read to the end; tokens counted on the fly."""
    body = json.dumps({"model": model, "stream": True, "max_tokens": tokens, "temperature": 0,
                       "ignore_eos": True, "messages": [{"role": "user", "content": "hello"}]}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Accept: text/event-stream\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
               % (len(body), body))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    s = Stream(time.perf_counter(), tokens)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"{model} on port {port}: {head[:200]!r} {await reader.read(500)!r}")
        tail = b""  # the end of the last read: a pattern split between two reads is still seen
        while data := await reader.read(1 << 16):
            now = time.perf_counter()
            seen = tail + data
            s.chunks += seen.count(CHUNK) - tail.count(CHUNK)
            if s.first is None and CONTENT in seen:
                s.first = now
            s.finished = s.finished or FINISHED in seen
            tail = data[-len(FINISHED):]
        s.done = time.perf_counter()
    finally:
        writer.close()
    return s


@dataclass
class Way:
    """One way (direct or through) of one scenario: every round's streams and the endpoint's CPU."""

    rounds: list[list[Stream]] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the daemon's, less its idle share
    seconds: float = 0.0

    def per_chunk(self) -> str:
        """The daemon's CPU per relayed chunk, and its share of one core while relaying."""
        return (f"{1e6 * self.cpu_seconds / self.chunks():6.1f}us "
                f"{100 * self.cpu_seconds / self.seconds:4.0f}%")

    def rate(self, what: str) -> float:
        """Aggregate tokens (or chunks) per second: the median over rounds of all streams' sum / wall."""
        rates = [sum(s.tokens if what == "tokens" else s.chunks for s in r)
                 / (max(s.done for s in r) - min(s.sent for s in r)) for r in self.rounds]
        return statistics.median(rates)

    def ttft_ms(self) -> float:
        return 1000 * statistics.median(s.first - s.sent for r in self.rounds for s in r
                                        if s.first is not None)

    def chunks(self) -> int:
        return sum(s.chunks for r in self.rounds for s in r)


async def batch(port: int, model: str, streams: int, tokens: int) -> list[Stream]:
    done = await asyncio.gather(*(one_stream(port, model, tokens) for _ in range(streams)))
    if not all(s.finished and s.first is not None for s in done):
        raise SystemExit(f"{model}: a stream ended before its {tokens} tokens (no finish_reason length)")
    return list(done)


@dataclass(frozen=True)
class Daemon:
    pid: int
    idle: float  # CPU seconds a second with every model ready and no request: not the relaying's

    def cpu(self) -> float:
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


async def compare(direct_port: int, proxy_port: int, model: str, streams: int, tokens: int, rounds: int,
                  daemon: Daemon) -> tuple[Way, Way]:
    direct, through = Way(), Way()
    await batch(direct_port, model, streams, min(tokens, 8))  # warm up: connections, caches
    await batch(proxy_port, model, streams, min(tokens, 8))
    for i in range(rounds):
        for way in ((direct, through) if i % 2 == 0 else (through, direct)):
            cpu, began = daemon.cpu(), time.perf_counter()
            port = direct_port if way is direct else proxy_port
            way.rounds.append(await batch(port, model, streams, tokens))
            way.seconds += time.perf_counter() - began
            way.cpu_seconds += daemon.cpu() - cpu - daemon.idle * (time.perf_counter() - began)
    return direct, through


# ---- the run ------------------------------------------------------------------------------------


def wait_for(path: Path, daemon: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start its endpoint within {timeout:g} s")
        time.sleep(0.05)


async def ready_ports(root: Path, models: list[str]) -> dict[str, int]:
    """Load every model (none conflicts with another) and read its published port back."""
    from llm_mcp.clients.client import DaemonClient

    async with DaemonClient(root / "d.sock", autostart=False, name="bench") as client:
        for model in models:
            job = await client.call("switch", model=model, wait=True, timeout=120)
            if job.get("result") != "ready":
                raise SystemExit(f"switch to {model}: {job.get('result')}: {job.get('detail')} {job}")
        status = await client.call("status")
    ports = {m["id"]: int(m["endpoint"].rsplit(":", 1)[1]) for m in status["models"] if m["state"] == "ready"}
    if set(models) - set(ports):
        raise SystemExit(f"not ready: {sorted(set(models) - set(ports))}; status: {status['models']}")
    return ports


def pinning(wanted: bool) -> tuple[int, set[int]] | None:
    """(the servers' CPU, the others) when pinning is asked for and there are CPUs to split."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[-1], set(cpus[:-1])) if wanted and len(cpus) >= 2 else None


def pin_servers(root: Path, cpu: int) -> None:
    """Every model server of this run on `cpu` (docker update: no restart)."""
    config = (root / "models.conf").read_text(encoding="utf-8")
    instance = config.split("instance = ", 1)[1].split("\n", 1)[0]
    from llm_mcp.config.compose import LABEL_INSTANCE

    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL_INSTANCE}={instance}"],
                         capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["docker", "update", "--cpuset-cpus", str(cpu), *ids], capture_output=True, check=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def measure(root: Path, args: argparse.Namespace, pid: int) -> int:
    models = ["paced", "unpaced", *([] if args.no_real else ["real"])]
    ports = await ready_ports(root, models)
    if args.pin is not None:
        pin_servers(root, args.pin)
    proxy_port = int((root / "proxy.port").read_text(encoding="utf-8"))
    load = os.getloadavg()[0]
    idle = Daemon(pid, 0.0)
    cpu = idle.cpu()
    await asyncio.sleep(IDLE_SECONDS)
    daemon = Daemon(pid, (idle.cpu() - cpu) / IDLE_SECONDS)
    print(f"the daemon idle, {len(models)} models ready: {100 * daemon.idle:.1f} % of a core "
          "(taken off `endpoint CPU` below)\n")

    print(f"{'load (a)':10} {'streams':>7} {'way':>8} {'tok/s':>9} {'chunks/s':>9} {'TTFT p50':>9} "
          f"{'endpoint CPU':>14}")
    results: dict[tuple[str, int], tuple[Way, Way]] = {}
    for model in ["paced", *([] if args.no_real else ["real"])]:
        tokens = args.tokens if model == "paced" else args.real_tokens
        for streams in STREAMS:
            direct, through = await compare(ports[model], proxy_port, model, streams, tokens, args.rounds,
                                            daemon)
            results[model, streams] = direct, through
            for name, way in (("direct", direct), ("through", through)):
                per_chunk = way.per_chunk() if way is through else ""
                print(f"{model:10} {streams:>7} {name:>8} {way.rate('tokens'):9.1f} "
                      f"{way.rate('chunks'):9.1f} {way.ttft_ms():7.2f}ms {per_chunk:>14}", flush=True)

    print(f"\n{'headroom (b)':12} {'streams':>7} {'direct':>10} {'through':>10} {'ratio':>6} "
          f"{'endpoint CPU':>14}")
    best = {"direct": 0.0, "through": 0.0}
    for streams in HEADROOM_STREAMS:
        direct, through = await compare(ports["unpaced"], proxy_port, "unpaced", streams,
                                        args.headroom_chunks // streams, 1, daemon)
        d, t = direct.rate("chunks"), through.rate("chunks")
        best["direct"], best["through"] = max(best["direct"], d), max(best["through"], t)
        print(f"{'unpaced':12} {streams:>7} {d:10.0f} {t:10.0f} {t / d:6.2f} "
              f"{through.per_chunk():>14}", flush=True)

    # what one request costs the endpoint apart from its chunks: 16 at once, one token each
    direct, through = await compare(ports["paced"], proxy_port, "paced", 16, 1, args.rounds, daemon)
    requests = sum(len(r) for r in through.rounds)
    print(f"\nrequest setup (16 at once, 1 token each): endpoint CPU "
          f"{1e3 * through.cpu_seconds / requests:.2f} ms a request; TTFT p50 {direct.ttft_ms():.2f} ms "
          f"direct, {through.ttft_ms():.2f} ms through")

    print("\ntargets (through / direct, same run):")
    for model in ["paced", *([] if args.no_real else ["real"])]:
        for streams in STREAMS:
            direct, through = results[model, streams]
            ratio = through.rate("tokens") / direct.rate("tokens")
            added = through.ttft_ms() - direct.ttft_ms()
            print(f"  {model} x{streams}: delivered tokens/s {100 * ratio:.1f} % "
                  f"({verdict(ratio >= TARGET_RATIO)} >= {100 * TARGET_RATIO:g} %), "
                  f"added TTFT p50 {added:+.2f} ms ({verdict(added <= TARGET_TTFT_MS[streams])} "
                  f"<= {TARGET_TTFT_MS[streams]:g} ms)")
    load_rate = results["paced", 16][1].rate("chunks")
    multiple = best["through"] / load_rate
    print(f"  headroom: best {best['through']:.0f} chunks/s through (direct {best['direct']:.0f}) = "
          f"{multiple:.1f}x the 16-stream paced load's {load_rate:.0f} chunks/s "
          f"({verdict(multiple >= TARGET_HEADROOM)} >= {TARGET_HEADROOM:g}x)")
    where = (f"servers pinned to CPU {args.pin}, endpoint and client to the others" if args.pin is not None
             else "not pinned: servers, endpoint and client share every CPU")
    print(f"({args.rounds} rounds, {args.tokens} paced tokens a stream, {args.real_tokens} real; "
          f"{os.cpu_count()} CPUs, {where}; load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end)")
    return 0


def print_profile(path: Path) -> None:
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(25)
    print("\nthe daemon process under cProfile, by own time:")
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per scenario and way")
    parser.add_argument("--tokens", type=int, default=300, help="tokens a paced stream (200/s: 1.5 s)")
    parser.add_argument("--real-tokens", type=int, default=800, help="tokens a real llama-server stream")
    parser.add_argument("--real-parallel", type=int, default=16, help="llama-server --parallel")
    parser.add_argument("--headroom-chunks", type=int, default=64000, help="chunks per headroom measurement")
    parser.add_argument("--no-real", action="store_true", help="leave out the real llama-server")
    parser.add_argument("--no-pin", action="store_true", help="let servers, endpoint and client share "
                        "every CPU (default: the servers get the last one)")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile; stats to this file")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the daemon process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.profile)
        return 0
    build_paced_image()
    split = pinning(not args.no_pin)
    args.pin = None
    if split is not None:
        args.pin = split[0]
        os.sched_setaffinity(0, split[1])  # the daemon, started below, inherits it
    root = Path(tempfile.mkdtemp(prefix="llm-mcp-bench-"))
    config = write_setup(root, args.real_parallel)
    instance = config.read_text(encoding="utf-8").split("instance = ", 1)[1].split("\n", 1)[0]
    argv = [sys.executable, __file__, "--serve", str(root),
            *(["--profile", str(args.profile)] if args.profile else [])]
    daemon = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(root / "proxy.port", daemon)
        code = asyncio.run(measure(root, args, daemon.pid))
    finally:
        stop_child(daemon, 20)
        remove_containers(instance)
        shutil.rmtree(root, ignore_errors=True)
    if args.profile:
        print_profile(args.profile)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
