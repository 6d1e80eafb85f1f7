"""Check llm_mcp.hardware.gpu against a real GPU and the real pynvml.

    python bench/gpu_device_check.py [--samples 100] [--vram-mib 1024]
                                     [--backend auto|torch|cupy|cuda-driver|none] [--strict]

1. prints the GpuSnapshot as JSON;
2. times `--samples` sample() calls (mean and p99 in ms) and counts the NVML
   calls the cache saved, beside a sampler whose slow fields are not cached;
3. allocates VRAM in a child process (torch, cupy, or the CUDA driver through
   ctypes, whichever is there) and shows that NVML lists that process with its
   memory, marked ours when its pid is in container_pids and not otherwise.

Needs only the project's dependencies. Exits 0; with --strict, 1 when a check fails.
"""

from __future__ import annotations

import argparse
import ctypes.util
import importlib.util
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_mcp.hardware.gpu import (
    GpuProcess,
    GpuSampler,
    GpuSnapshot,
    temperature_level,
    usage_level,
)

# Runs in the child: allocate, say "ready", hold the memory until stdin closes.
CHILD = r"""
import sys
backend, n = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
if backend == "torch":
    import torch
    buf = torch.empty(n, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
elif backend == "cupy":
    import cupy
    buf = cupy.empty(n, dtype=cupy.uint8)
    cupy.cuda.Device().synchronize()
else:
    import ctypes
    cuda = ctypes.CDLL("libcuda.so.1")
    def check(rc, what):
        if rc != 0:
            raise SystemExit(f"{what} failed: CUDA error {rc}")
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    check(cuda.cuInit(0), "cuInit")
    check(cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    check(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(n)), "cuMemAlloc_v2")
print("ready", flush=True)
sys.stdin.read()
"""


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def section(self, title: str) -> None:
        print(f"\n== {title} " + "=" * max(0, 70 - len(title)))

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.failures += not ok
        print(f"  {'PASS' if ok else 'FAIL'}  {what}" + (f"  ({detail})" if detail else ""))

    def skip(self, what: str, why: str) -> None:
        print(f"  SKIP  {what}  ({why})")


def show_snapshot(report: Report) -> GpuSnapshot:
    report.section("1. snapshot from the real pynvml")
    with GpuSampler() as sampler:
        snap = sampler.sample()
    text = json.dumps(snap.to_dict(), indent=2)
    print(text)
    report.check(GpuSnapshot.from_dict(json.loads(text)) == snap, "to_dict() round-trips via JSON")
    if not snap.available:
        print(f"  no GPU: {snap.reason}")
        return snap
    for gpu in snap.gpus:
        heat = temperature_level(gpu.temperature_c, gpu.slowdown_temp_c)
        print(
            f"  GPU {gpu.index}: {gpu.name}; util {gpu.utilization_pct}% "
            f"({usage_level(gpu.utilization_pct)}), memory {gpu.memory_used_mib}/"
            f"{gpu.memory_total_mib} MiB ({usage_level(gpu.memory_pct)}), "
            f"{gpu.temperature_c} C of slowdown {gpu.slowdown_temp_c} C / shutdown "
            f"{gpu.shutdown_temp_c} C ({heat}),"
            f" {gpu.power_w}/{gpu.power_limit_w} W, fan {gpu.fan_pct}"
        )
        report.check(
            None not in (gpu.name, gpu.uuid, gpu.memory_total_mib, gpu.memory_used_mib),
            f"GPU {gpu.index} reports name, uuid and memory",
        )
        na = [k for k, v in gpu.to_dict().items() if v is None]
        print(f"  GPU {gpu.index} fields N/A here: {', '.join(na) or 'none'}")
    return snap


def time_samples(report: Report, samples: int) -> None:
    report.section(f"2. {samples} sample() calls")
    for label, ttl in (("cached (slow_field_ttl=5 s)", 5.0), ("slow fields uncached (ttl=0)", 0.0)):
        with GpuSampler(slow_field_ttl=ttl) as sampler:
            sampler.sample()  # init and the static fields
            made, saved = sampler.calls_made, sampler.calls_saved
            times = []
            for _ in range(samples):
                start = time.perf_counter()
                sampler.sample()
                times.append((time.perf_counter() - start) * 1000)
            made, saved = sampler.calls_made - made, sampler.calls_saved - saved
        p99 = statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]
        print(
            f"  {label:30} mean {statistics.fmean(times):7.3f} ms  p99 {p99:7.3f} ms  "
            f"NVML calls {made} ({made / samples:.1f}/sample), saved by the cache {saved}"
        )


def pick_backend(wanted: str) -> str | None:
    if wanted != "auto":
        return None if wanted == "none" else wanted
    for module in ("torch", "cupy"):
        if importlib.util.find_spec(module) is not None:
            return module
    return "cuda-driver" if ctypes.util.find_library("cuda") else None


def find(snap: GpuSnapshot, pid: int) -> GpuProcess | None:
    for gpu in snap.gpus:
        for proc in gpu.processes:
            if proc.pid == pid:
                return proc
    return None


def vram_check(report: Report, backend: str | None, mib: int) -> None:
    report.section(f"3. a process holding {mib} MiB of VRAM")
    if backend is None:
        report.skip("VRAM allocation", "no torch, cupy or libcuda here")
        return
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend, str(mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not wait_ready(child, timeout=180):
            err = child.stderr.read()[-800:] if child.poll() is not None and child.stderr else ""
            report.skip(f"VRAM allocation with {backend}", f"child not ready: {err.strip()}")
            return
        print(f"  child pid {child.pid} allocated {mib} MiB with {backend}")
        ours = {child.pid}
        with GpuSampler(container_pids=lambda: ours) as marked, GpuSampler() as plain:
            proc = poll(lambda: find(marked.sample(), child.pid), seconds=10)
            other = find(plain.sample(), child.pid)
            listed = [p.to_dict() for g in marked.sample().gpus for p in g.processes]
        print(f"  NVML processes: {json.dumps(listed)}")
        report.check(
            proc is not None,
            "the child is listed among the GPU's processes",
            "" if proc else "NVML reports host PIDs; is this run in its own PID namespace?",
        )
        if proc is None:
            return
        report.check(
            proc.used_mib is not None and proc.used_mib >= mib,
            "its used memory covers the allocation",
            f"{proc.used_mib} MiB",
        )
        report.check(proc.ours, "it is marked ours when its pid is in container_pids")
        report.check(other is not None and not other.ours, "and not ours without container_pids")
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_ready(child: subprocess.Popen[str], timeout: float) -> bool:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(child.stdout.readline() if child.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    return bool(line) and line[0].strip() == "ready"


def poll(probe: Callable[[], GpuProcess | None], seconds: float) -> GpuProcess | None:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--vram-mib", type=int, default=1024)
    parser.add_argument("--backend", choices=["auto", "torch", "cupy", "cuda-driver", "none"], default="auto")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    args = parser.parse_args()

    report = Report()
    snap = show_snapshot(report)
    time_samples(report, args.samples)
    if snap.available:
        vram_check(report, pick_backend(args.backend), args.vram_mib)
    else:
        report.skip("VRAM allocation", "no GPU")
    print(f"\n{report.failures} check(s) failed" if report.failures else "\nall checks passed")
    return 1 if args.strict and report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
