"""What llm-monitor and the daemon cost: CPU idle and under a log burst, and the daemon's memory.

    .venv/bin/python bench/monitor_cost.py [--idle 20] [--burst 30] [--long-lines 600] [--json]

Sets up a private configuration (fake llama-server image, its own socket, state
dir and container name), starts the daemon, switches to an idle profile, runs
the real `llm-monitor` console script in a headless tmux terminal (120x40) and
reads the processes' CPU time with psutil:

1. the monitor idle: the daemon publishes GPU and system samples at 1 Hz, the
   monitor draws them (and the uptime ticks);
2. the monitor while the fake server prints 1,000 log lines a second
   (`--fake-lines 30000 --fake-line-rate 1000`) into the followed log panel;
3. the daemon idle with one subscriber (the monitor) and a running container;
4. the daemon during the burst (1,000 lines/s to one subscriber);
5. the daemon's peak RSS while the fake server prints lines of 1 MiB
   (`--fake-line-bytes`), enough to fill the log ring (cut to 64 KiB each, 32 MiB
   in all) with the monitor subscribed.

Prints % of one core against the targets (3 %, 15 %, 1 %, 10 %) and the RSS
against 150 MB. Needs Docker, the fake image (images/build.sh fake) and tmux.
Exit status 1 when a target is missed and --check is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, remove_containers, stop_child  # noqa: E402

FAKE_IMAGE = "llm-mcp-test/fake-llama-server:latest"
TARGETS = {"monitor_idle": 3.0, "monitor_burst": 15.0, "daemon_idle": 1.0, "daemon_burst": 10.0,
           "daemon_rss_long_lines_mb": 150.0}
MIB = 1024 * 1024


def write_setup(root: Path, instance: str, lines: int, rate: float, long_lines: int) -> Path:
    models = root / "models"
    models.mkdir()
    try:
        from llm_mcp.demo.tiny_model import main as make_models

        make_models([str(models)])
    except ImportError:  # the fake server never reads the file
        (models / "tiny-a.gguf").write_bytes(b"GGUF")
    (root / "compose").mkdir()
    shutil.copy(ROOT / "compose" / "compose.cpu.yaml", root / "compose" / "compose.yaml")
    config = root / "models.conf"
    config.write_text(
        f"[defaults]\ninstance = {instance}\nmodels_dir = {models}\nport = {free_port()}\n"
        f"compose_file = compose/compose.yaml\nstop_grace = 2\nimage = {FAKE_IMAGE}\n\n"
        "[idle]\nname = Idle\nmodel = tiny-a.gguf\nflags = --fake-load-seconds 0.2\n\n"
        f"[burst]\nname = Burst\nmodel = tiny-a.gguf\n"
        f"flags = --fake-load-seconds 0.2 --fake-lines {lines} --fake-line-rate {rate:g}\n\n"
        f"[long]\nname = Long\nmodel = tiny-a.gguf\n"
        f"flags = --fake-load-seconds 0.2 --fake-lines {long_lines} --fake-line-bytes {MIB} "
        "--fake-line-rate 50\n",
        encoding="utf-8")
    return config


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(procs: dict[str, psutil.Process], seconds: float) -> dict[str, float]:
    """% of one core each process used over `seconds` of wall time."""
    start = {name: cpu_seconds(p) for name, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {name: round(100.0 * (cpu_seconds(p) - start[name]) / wall, 2) for name, p in procs.items()}


async def call(socket_path: Path, config: Path, method: str, **params: object) -> object:
    from llm_mcp.clients.client import DaemonClient

    async with DaemonClient(socket_path, config_path=config, autostart=False, name="bench") as client:
        return await client.call(method, **params)


class Tmux:
    def __init__(self) -> None:
        self.server = f"llm-monitor-bench-{os.getpid()}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True,
                              check=False).stdout

    def pane(self) -> str:
        return self.run("capture-pane", "-p", "-t", "bench")

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.pane()
            if re.search(pattern, text, re.MULTILINE):
                return text
            time.sleep(0.2)
        raise SystemExit(f"monitor_cost: no {pattern!r} on screen after {timeout:g}s:\n{self.pane()}")

    def close(self) -> None:
        self.run("send-keys", "-t", "bench", "q")  # quit cleanly first (profilers write on exit)
        time.sleep(2)
        self.run("kill-server")


def long_lines_peak_rss(daemon: psutil.Process, socket_path: Path, config: Path, lines: int) -> int:
    """The daemon's peak RSS until the last long line reached its log."""
    peak = daemon.memory_info().rss
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        peak = max(peak, daemon.memory_info().rss)
        last = anyio.run(lambda: call(socket_path, config, "tail_logs", lines=1, run="current"))
        found = last.get("lines") if isinstance(last, dict) else None
        if found and str(found[-1].get("text", "")).startswith(f"fake line {lines} "):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"monitor_cost: line {lines} of 1 MiB never reached the daemon's log")
    return max(peak, daemon.memory_info().rss)


def monitor_command() -> str:
    script = Path(sys.executable).with_name("llm-monitor")
    return str(script) if script.exists() else f"{sys.executable} -m monitor"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds measured idle (default 20)")
    parser.add_argument("--burst", type=float, default=30.0, help="seconds measured in the burst")
    parser.add_argument("--rate", type=float, default=1000.0, help="log lines per second in the burst")
    parser.add_argument("--long-lines", type=int, default=600,
                        help="lines of 1 MiB printed for the memory measurement (default 600)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--monitor-command", default=monitor_command(),
                        help="what tmux runs (default: the llm-monitor console script)")
    parser.add_argument("--daemon-command", default=f"{sys.executable} -m llm_mcp",
                        help="how to run `llm-mcp` for the daemon (default: this Python's -m llm_mcp)")
    args = parser.parse_args(argv)
    if not shutil.which("tmux"):
        raise SystemExit("monitor_cost: tmux is needed")

    root = Path(tempfile.mkdtemp(prefix="llm-monitor-bench-"))
    instance = "bench" + uuid.uuid4().hex[:8]
    config = write_setup(root, instance, int(args.rate * (args.burst + 5)), args.rate, args.long_lines)
    socket_path = root / "d.sock"
    env = {**os.environ, "LLM_MCP_CONFIG": str(config), "LLM_MCP_SOCKET": str(socket_path),
           "LLM_MCP_STATE_DIR": str(root / "state")}
    os.environ.update({k: env[k] for k in ("LLM_MCP_CONFIG", "LLM_MCP_SOCKET", "LLM_MCP_STATE_DIR")})
    daemon = subprocess.Popen([*shlex.split(args.daemon_command), "daemon", "--socket", str(socket_path),
                               "--config", str(config)], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(root / "daemon.err", "wb"))  # noqa: SIM115
    tmux = Tmux()
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"monitor_cost: the daemon did not start:\n"
                                 f"{(root / 'daemon.err').read_text(errors='replace')}")
            time.sleep(0.1)
        anyio.run(lambda: call(socket_path, config, "switch", model="idle", wait=True, timeout=60))

        tmux.run("-f", "/dev/null", "new-session", "-d", "-s", "bench", "-x", "120", "-y", "40",
                 f"exec {args.monitor_command}")
        tmux.wait_for(r"^ llm-mcp ● ready  Idle ", 60)
        pane_pid = int(tmux.run("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())
        monitor = psutil.Process(pane_pid)
        procs = {"monitor": monitor, "daemon": psutil.Process(daemon.pid)}
        time.sleep(3)  # past the start-up work (imports, first layout, backfill)

        idle = measure(procs, args.idle)

        anyio.run(lambda: call(socket_path, config, "switch", model="burst", wait=True, timeout=60))
        started = time.monotonic()
        burst = measure(procs, args.burst)
        elapsed = time.monotonic() - started
        shown = [int(n) for n in re.findall(r"fake line (\d+)", tmux.pane())]
        newest = max(shown, default=0)
        expected = int(args.rate * elapsed)

        rss_before = procs["daemon"].memory_info().rss
        anyio.run(lambda: call(socket_path, config, "switch", model="long", wait=True, timeout=60))
        rss_peak = long_lines_peak_rss(procs["daemon"], socket_path, config, args.long_lines)
    finally:
        tmux.close()
        try:
            anyio.run(lambda: call(socket_path, config, "stop", force=True, wait=True, timeout=30))
        except Exception as exc:  # still clean up below
            print(f"monitor_cost: stop failed: {exc}", file=sys.stderr)
        stop_child(daemon, 15)
        remove_containers(instance)
        shutil.rmtree(root, ignore_errors=True)

    results = {
        "monitor_idle": idle["monitor"],
        "monitor_burst": burst["monitor"],
        "daemon_idle": idle["daemon"],
        "daemon_burst": burst["daemon"],
        "daemon_rss_before_long_lines_mb": round(rss_before / MIB, 1),
        "daemon_rss_long_lines_mb": round(rss_peak / MIB, 1),
        "burst_lines_per_second": args.rate,
        "burst_newest_line_on_screen": newest,
        "burst_lines_sent_by_then": expected,
        "cpu_cores": psutil.cpu_count(),
    }
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        rows = [
            ("monitor idle (1 Hz GPU/system samples)", results["monitor_idle"], TARGETS["monitor_idle"]),
            (f"monitor, {args.rate:,.0f} log lines/s", results["monitor_burst"], TARGETS["monitor_burst"]),
            ("daemon idle, one subscriber", results["daemon_idle"], TARGETS["daemon_idle"]),
            (f"daemon, {args.rate:,.0f} log lines/s, one subscriber", results["daemon_burst"],
             TARGETS["daemon_burst"]),
        ]
        print(f"{'what':<46} {'% of one core':>14} {'target':>8}")
        for what, value, target in rows:
            verdict = "" if target is None else ("ok" if value <= target else "OVER")
            limit = "" if target is None else f"<= {target:g}"
            print(f"{what:<46} {value:>14.2f} {limit:>8} {verdict}")
        rss, rss_limit = results["daemon_rss_long_lines_mb"], TARGETS["daemon_rss_long_lines_mb"]
        print(f"{f'daemon RSS, {args.long_lines} lines of 1 MiB (MiB)':<46} {rss:>14.1f} "
              f"{f'<= {rss_limit:g}':>8} {'ok' if rss <= rss_limit else 'OVER'}"
              f"   (before: {results['daemon_rss_before_long_lines_mb']:.1f})")
        print(f"burst: newest line on screen #{newest}, about {expected} sent by then "
              f"({psutil.cpu_count()} cores)")
    missed = [k for k, limit in TARGETS.items() if results[k] > limit]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
