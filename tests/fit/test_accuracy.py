"""The estimate against what the real llama-server says it allocated (`-lv 5`), on the CPU.

Seven generated models of different shapes (one with sliding-window attention), fifteen
command lines (five with -ot, --n-cpu-moe or --cpu-moe): weights and KV within 2 %, the
total within 10 %, and the tensors an override moves are exactly the ones llama-server
moves. Each load takes about a second (one container, removed at once). The table in
docs/fit.md comes from the same cases (python -m tests.fit.llama_alloc).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_mcp.demo.shaped_model import write_shaped_model
from llm_mcp.hardware.fit_estimate import estimate
from llm_mcp.hardware.fit_settings import settings_from_args
from llm_mcp.hardware.fit_suggest import suggest
from llm_mcp.hardware.gguf_info import read_model_info
from tests.fit.conftest import MOE
from tests.fit.llama_alloc import CASES, Case, estimate_case, load_and_read, override_placement

pytestmark = [pytest.mark.docker, pytest.mark.real_llama]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_estimate_matches_what_llama_server_allocates(
    case: Case, shaped_models: dict[str, Path], real_image: str
) -> None:
    path = shaped_models[case.model]
    real = load_and_read(path, list(case.args), image=real_image)
    assert real.loaded, "\n".join(real.log[-20:])
    host = estimate_case(path, case).host
    weights, kv = sum(real.model.values()), sum(real.kv.values())
    assert abs(host.weights - weights) <= 0.02 * weights, (host.weights, real.model)
    assert abs(host.kv - kv) <= 0.02 * kv, (host.kv, real.kv)
    ours = host.weights + host.kv + host.compute
    assert abs(ours - real.total) <= 0.10 * real.total, (host, real.compute, real.output)
    # Placement: what llama-server moved by override is what the estimate moves off a GPU.
    assert override_placement(path, case) == set(real.overridden)
    assert set(real.overridden.values()) <= {"CPU", "CPU_REPACK"}


def test_suggested_n_cpu_moe_moves_exactly_the_tensors_llama_server_moves(
    tmp_path: Path, real_image: str
) -> None:
    path = write_shaped_model(tmp_path / "moe8.gguf", MOE, name="moe8")
    info = read_model_info(path)
    args = ["--ctx-size", "2048"]
    full = estimate(info, settings_from_args(args), n_gpus=1).gpus[0]
    free = {"gpu0": full.total + full.band - info.expert_bytes // 2}
    n = suggest(info, settings_from_args(args), free, n_gpus=1).n_cpu_moe
    assert n is not None and 0 < n < info.n_layer
    flags = [*args, "--n-cpu-moe", str(n)]
    real = load_and_read(path, flags, image=real_image)
    assert real.loaded, "\n".join(real.log[-20:])
    est = estimate(info, settings_from_args(flags), n_gpus=1)
    moved = {t for t, d in est.placement.items() if d == "host" and t != "token_embd.weight"}
    assert moved == set(real.overridden)
    # The host part of the suggestion: those tensors' bytes (exact, from the header) plus the input layer.
    sizes = {t.name: t.n_bytes for t in info.tensors}
    assert est.host.weights == sum(sizes[t] for t in real.overridden) + sizes["token_embd.weight"]
    # And the whole load on the CPU agrees with the estimate for the CPU.
    host = estimate(info, settings_from_args(flags)).host
    assert abs(host.weights - sum(real.model.values())) <= 0.02 * sum(real.model.values())


def test_a_split_model_is_estimated_whole_as_llama_server_loads_it(tmp_path: Path, real_image: str) -> None:
    first = write_shaped_model(tmp_path / "m.gguf", MOE, split_max_tensors=20)
    real = load_and_read(first, ["--ctx-size", "1024"], image=real_image)
    assert real.loaded, "\n".join(real.log[-20:])
    host = estimate(read_model_info(first), settings_from_args(["--ctx-size", "1024"])).host
    assert abs(host.weights - sum(real.model.values())) <= 0.02 * sum(real.model.values())
