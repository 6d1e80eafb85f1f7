"""How much time does a switch through llm-mcp add on top of llama-server's own load?

    .venv/bin/python bench/switch_overhead.py [-n 5] [--image llm-mcp-test/llama-server:cpu]

A benchmark, not a test. With the real llama-server image and the tiny model
tiny-a.gguf, N rounds of:

  (a) bare: `docker run -d` of the same image and argv, then GET /health every
      20 ms until it answers 200 (the time), then `docker rm -f`;
  (b) switch: Core.switch to a profile with that model, alternating between two
      profiles that differ only in --alias, so each switch really replaces the
      running container; the time from the call to the job's ready.

Prints the median and p90 of both, the difference (what a switch adds: stopping
the old container, the thread hops, the health poll interval) in seconds and
as a ratio. Target: <= 0.5 s median. Self-contained: a temporary models.conf,
compose file, state dir and models (llm_mcp.demo.tiny_model).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, tiny_tree
from llm_mcp.config.models_conf import load_config
from llm_mcp.core.scheduler import Core
from llm_mcp.runtime.docker_engine import DockerRuntime

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = "llm-mcp-test/llama-server:cpu"


def write_setup(root: Path, image: str) -> Path:
    models = tiny_tree(root)
    profile = (f"model = tiny-a.gguf\nimage = {image}\nctx_size = 256\nn_gpu_layers = 0\n"
               "flags = --threads 1 --parallel 1 --no-warmup\n")
    config = root / "models.conf"
    config.write_text(
        f"[defaults]\ninstance = bench{uuid.uuid4().hex[:8]}\nmodels_dir = {models}\n"
        f"port = {free_port()}\ncompose_file = compose/compose.yaml\nverify = false\n"
        f"stop_grace = 5\n\n[bench-a]\n{profile}\n[bench-b]\n{profile}",
        encoding="utf-8")
    return config


def bare_run(image: str, args: list[str], models: Path) -> float:
    """`docker run -d` to /health 200, polled every 20 ms."""
    port = free_port()
    name = f"llm-mcp-bench-bare-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}/health"
    with httpx.Client(timeout=httpx.Timeout(1.0)) as client:
        start = time.perf_counter()
        subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                        "-v", f"{models}:/models:ro", image, *args],
                       check=True, capture_output=True)
        try:
            while True:
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - start
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - start > 60:
                    raise TimeoutError("the bare container never answered /health 200")
                time.sleep(0.02)
        finally:
            subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


async def bench(rounds: int, image: str) -> int:
    with tempfile.TemporaryDirectory(prefix="llm-mcp-bench-") as tmp:
        root = Path(tmp)
        config_path = write_setup(root, image)
        config = load_config(config_path)
        profile = config.profile("bench-a")
        runtime = DockerRuntime(config.instance)
        core = Core(load_config=lambda: load_config(config_path), runtime=runtime,
                    state_dir=root / "state")
        bare: list[float] = []
        switched: list[float] = []
        phases: list[list[tuple[str, float]]] = []
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(core.run)
                warm = await core.switch("bench-a")  # a running container to replace
                with anyio.fail_after(60):
                    await warm.done.wait()
                if warm.result != "ready":
                    print(f"warm-up switch failed: {warm.to_dict()}", file=sys.stderr)
                    return 1
                for i in range(rounds):
                    bare.append(await anyio.to_thread.run_sync(
                        bare_run, image, profile.server_args(), profile.models_dir))
                    target = "bench-b" if i % 2 == 0 else "bench-a"
                    start = time.perf_counter()
                    job = await core.switch(target)
                    with anyio.fail_after(60):
                        await job.done.wait()
                    switched.append(time.perf_counter() - start)
                    if job.result != "ready":
                        print(f"switch failed: {job.to_dict()}", file=sys.stderr)
                        return 1
                    phases.append([(p["phase"], p["at"]) for p in job.phases])
                    print(f"round {i + 1}/{rounds}: bare {bare[-1]:.3f} s, switch {switched[-1]:.3f} s",
                          flush=True)
                stop = await core.stop_model()
                with anyio.fail_after(30):
                    await stop.done.wait()
                tg.cancel_scope.cancel()
        finally:
            leftovers = runtime.managed()
            for info in leftovers:
                runtime.stop_and_remove(info.id, 0)

    bare_median, bare_p90 = summary(bare)
    switch_median, switch_p90 = summary(switched)
    added = switch_median - bare_median
    print()
    print(f"image {image}, model tiny-a.gguf, {rounds} rounds")
    print(f"{'':24}{'median':>10}{'p90':>10}")
    print(f"{'bare docker run -> 200':24}{bare_median:>9.3f}s{bare_p90:>9.3f}s")
    print(f"{'llm-mcp switch -> ready':24}{switch_median:>9.3f}s{switch_p90:>9.3f}s")
    print(f"added by a switch: {added:+.3f} s (median), ratio {switch_median / bare_median:.2f}x")
    # Where the time goes: each phase's median length (a phase lasts until the next begins).
    spans: dict[str, list[float]] = {}
    for job_phases in phases:
        for (name, at), (_, until) in itertools.pairwise(job_phases):
            spans.setdefault(name, []).append(until - at)
    print("median time in each phase: "
          + ", ".join(f"{name} {statistics.median(v):.3f}s" for name, v in spans.items()))
    verdict = "within" if added <= 0.5 else "OVER"
    print(f"target <= 0.5 s added: {verdict}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()
    return anyio.run(bench, args.rounds, args.image)


if __name__ == "__main__":
    sys.exit(main())
