"""What the real llama-server allocates for a model and flags, read from its own log lines.

`-lv 4` prints the buffer sizes; `-lv 5` (debug) adds one line per tensor an override moves.

One container per load (``docker run --rm``, argv list, no shell), stopped as soon as the
server says the model is loaded. The cases (generated models x flags) are shared by the
accuracy test and by the table in docs/fit.md:
``python -m tests.fit.llama_alloc OUT_DIR`` prints that table.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from llm_mcp.demo.shaped_model import Shape, write_shaped_model
from llm_mcp.hardware.fit_estimate import Estimate, estimate
from llm_mcp.hardware.fit_settings import settings_from_args
from llm_mcp.hardware.gguf_info import read_model_info

REAL_IMAGE = "llm-mcp-test/llama-server:cpu"
MiB = 1 << 20

_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")
_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")
_PROJECTED = re.compile(r"projected to use (\d+) MiB of host memory")
_DONE = ("model loaded", "server is listening", "exiting due to")


@dataclass
class Allocation:
    """Buffer sizes llama-server printed, in bytes (MiB with two decimals: +-5 KiB each)."""

    model: dict[str, int] = field(default_factory=dict)
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: dict[str, int] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)
    projected_host: int | None = None  # llama.cpp's own fit projection (whole MiB)
    loaded: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            sum(self.model.values())
            + sum(self.kv.values())
            + sum(self.compute.values())
            + sum(self.output.values())
        )


def parse_allocation(lines: list[str]) -> Allocation:
    alloc = Allocation(log=lines)
    kinds = {"model": alloc.model, "KV": alloc.kv, "compute": alloc.compute, "output": alloc.output}
    for line in lines:
        if m := _BUFFER.search(line):
            if m.group(2) == "model" and alloc.compute:
                # llama.cpp's --fit dry run (no allocation, printed at -lv 5) came first;
                # the real load starts here.
                # (Its override lines name the same tensors: they are kept.)
                for kind in kinds.values():
                    kind.clear()
            target = kinds[m.group(2)]
            target[m.group(1)] = target.get(m.group(1), 0) + round(float(m.group(3)) * MiB)
        elif m := _OVERRIDDEN.search(line):
            alloc.overridden[m.group(1)] = m.group(2)
        elif m := _PROJECTED.search(line):
            alloc.projected_host = int(m.group(1)) * MiB
        if "model loaded" in line:
            alloc.loaded = True
    return alloc


def load_and_read(
    model: Path, args: list[str], *, image: str = REAL_IMAGE, timeout: float = 60
) -> Allocation:
    """Start llama-server on ``model`` with ``args``, read its lines until it has loaded, stop it."""
    name = f"llm-mcp-fit-{uuid.uuid4().hex[:10]}"
    argv = [
        "docker", "run", "--rm", "--name", name, "--network", "none",
        "-v", f"{model.parent}:/models:ro", image,
        "-m", f"/models/{model.name}", "--host", "127.0.0.1", "--port", "8080", "-lv", "5", "--no-warmup",
        *args,
    ]  # fmt: skip
    lines: list[str] = []
    # A hung load must not hang the test: the timer removes the container, which ends the stream.
    timer = threading.Timer(
        timeout, lambda: subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    )
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if any(s in line for s in _DONE):
                    break
        finally:
            timer.cancel()
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=30, check=False)
            proc.communicate(timeout=30)
    return parse_allocation(lines)


@dataclass(frozen=True)
class Case:
    model: str
    args: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.model} {' '.join(self.args)}".strip()


# Seven shapes: dense, GQA, MQA with tied output, two MoE, wide quantised, sliding window. Head sizes >= 32
# wherever a q8_0 cache is used.
MODELS: dict[str, Shape] = {
    "dense-f32": Shape(n_layer=4, n_embd=256, n_head=8, n_head_kv=8, n_ff=512),
    "gqa-f16": Shape(n_layer=6, n_embd=256, n_head=8, n_head_kv=2, n_ff=768, weight_type="F16"),
    "mqa-tied": Shape(n_layer=4, n_embd=384, n_head=12, n_head_kv=1, n_ff=512, tied_output=True),
    "moe-f32": Shape(n_layer=4, n_embd=256, n_head=8, n_head_kv=4, n_ff=256, n_expert=8, n_expert_used=2),
    "moe-q8": Shape(n_layer=6, n_embd=256, n_head=4, n_head_kv=4, n_ff=256, n_expert=4, n_expert_used=2,
                    weight_type="Q8_0"),
    "wide-q8": Shape(n_layer=3, n_embd=512, n_head=16, n_head_kv=4, n_ff=1024, weight_type="Q8_0"),
    # Sliding-window attention (gemma3: 5 of every 6 layers see the last 128 tokens).
    "swa-gemma3": Shape(arch="gemma3", n_layer=6, n_embd=256, n_head=4, n_head_kv=2, n_ff=512,
                        sliding_window=128, tied_output=True),
}  # fmt: skip

CASES: list[Case] = [
    Case("dense-f32", ("--ctx-size", "2048")),
    Case("gqa-f16", ("--ctx-size", "4096", "-ctk", "q8_0", "-ctv", "q8_0")),
    Case("mqa-tied", ("--ctx-size", "2048", "--parallel", "2", "--flash-attn", "off")),
    Case("moe-f32", ("--ctx-size", "2048", "-ot", r"blk\.[0-1]\.ffn_.*_exps=CPU")),
    Case("moe-f32", ("--ctx-size", "2048", "--n-cpu-moe", "3")),
    Case("moe-f32", ("--ctx-size", "1024", "--cpu-moe", "-ub", "256")),
    Case("moe-q8", ("--ctx-size", "3072", "-ot", r"ffn_down_exps=CPU,blk\.[0-9]+\.ffn_up_exps=CPU",
                    "--n-cpu-moe", "2")),
    Case("wide-q8", ("--ctx-size", "8192", "-ot", r"attn_(q|k)\.=CPU", "-ctk", "q8_0")),
    # Held out: the compute-buffer coefficients were fitted on the eight cases above only.
    Case("dense-f32", ("-ub", "128", "-b", "256", "--ctx-size", "4096", "--parallel", "8")),
    Case("gqa-f16", ("--flash-attn", "off", "--ctx-size", "1024")),
    Case("wide-q8", ("--parallel", "3", "--kv-unified", "--ctx-size", "3000", "-ub", "1024")),
    Case("moe-q8", ("--flash-attn", "off", "--ctx-size", "4096", "-ub", "64")),
    Case("mqa-tied", ("--ctx-size", "16384", "-ctk", "q8_0", "-ctv", "q8_0")),
    Case("swa-gemma3", ("--ctx-size", "4096")),
    Case("swa-gemma3", ("--ctx-size", "8192", "--parallel", "2", "-ub", "256")),
]  # fmt: skip


def write_models(out_dir: Path) -> dict[str, Path]:
    return {
        n: write_shaped_model(out_dir / f"{n}.gguf", s, seed=i, name=n)
        for i, (n, s) in enumerate(MODELS.items())
    }


def estimate_case(path: Path, case: Case, *, n_gpus: int = 0) -> Estimate:
    return estimate(read_model_info(path), settings_from_args(list(case.args)), n_gpus=n_gpus)


def override_placement(path: Path, case: Case) -> set[str]:
    """Tensors our estimator moves to the host by override when every layer is on one GPU."""
    est = estimate_case(path, case, n_gpus=1)
    no_override = estimate(read_model_info(path), settings_from_args([]), n_gpus=1)
    return {n for n, d in est.placement.items() if d == "host" and no_override.placement[n] != "host"}


def _pct(est: int, real: int) -> str:
    return f"{(est - real) / real * 100:+.1f} %" if real else "n/a"


def table(out_dir: Path) -> str:
    paths = write_models(out_dir)
    rows = [
        "| model, flags | weights est / real (MiB) | KV est / real | compute+output est / real "
        "| total est / real | llama.cpp's projection | -ot tensors matched |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        real = load_and_read(paths[case.model], list(case.args))
        h = estimate_case(paths[case.model], case).host
        r_model, r_kv = sum(real.model.values()), sum(real.kv.values())
        r_comp = sum(real.compute.values()) + sum(real.output.values())
        total = h.weights + h.kv + h.compute
        ot = "-"
        if real.overridden:
            ours = override_placement(paths[case.model], case)
            ot = f"{len(ours & set(real.overridden))}/{len(real.overridden)}" + (
                "" if ours == set(real.overridden) else " (differs)"
            )
        rows.append(
            f"| `{case.label}` | {h.weights / MiB:.2f} / {r_model / MiB:.2f} ({_pct(h.weights, r_model)}) "
            f"| {h.kv / MiB:.2f} / {r_kv / MiB:.2f} ({_pct(h.kv, r_kv)}) "
            f"| {h.compute / MiB:.2f} / {r_comp / MiB:.2f} ({_pct(h.compute, r_comp)}) "
            f"| {total / MiB:.2f} / {real.total / MiB:.2f} ({_pct(total, real.total)}) "
            f"| {(real.projected_host or 0) / MiB:.0f} | {ot} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
