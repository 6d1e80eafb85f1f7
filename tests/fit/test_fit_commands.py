"""`llm-mcp fit`, the fit_model MCP tool and `llm-mcp check` on real model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextContent

from llm_mcp.clients import cli
from llm_mcp.clients.check import check_models
from llm_mcp.clients.client import DaemonClient
from llm_mcp.clients.mcp_server import make_server
from llm_mcp.config.models_conf import load_config
from llm_mcp.demo.tiny_model import write_tiny_model, write_truncated_model
from tests.conftest import Setup

MiB = 1 << 20


def _config(tmp_path: Path, moe_model: Path) -> Path:
    good = tmp_path / moe_model.name
    good.symlink_to(moe_model)
    write_truncated_model(write_tiny_model(tmp_path / "whole.gguf"), tmp_path / "cut.gguf")
    conf = tmp_path / "models.conf"
    conf.write_text(
        "[defaults]\nmodels_dir = .\n\n"
        f"[moe]\nname = MoE\nmodel = {moe_model.name}\nctx_size = 4096\nflags = --parallel 2\n\n"
        "[cut]\nname = Cut\nmodel = cut.gguf\n",
        encoding="utf-8",
    )
    return conf


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_prints_the_breakdown_verdict_and_what_fits_a_stated_gpu(
    tmp_path: Path, moe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(_config(tmp_path, moe_model))
    # 800 MiB: every layer would need about 830 MiB with the band (512 MiB of it CUDA's own).
    code, out, _ = _run(
        capsys, "--config", conf, "fit", "moe", "--free-gpu", "800MiB", "--free-host", "8GiB", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["verdict"]["fit"] == "tight"
    devices = {d["device"]: d for d in report["estimate"]["devices"]}
    assert set(devices) == {"host", "gpu0"}
    assert devices["gpu0"]["total"] == sum(
        devices["gpu0"][k] for k in ("weights", "kv", "compute", "overhead")
    )
    hints = report["suggestions"]
    assert hints is not None and hints["n_gpu_layers"] is not None and 0 < hints["n_gpu_layers"] < 9
    code, out, _ = _run(capsys, "--config", conf, "fit", "moe", "--free-gpu", "300MiB", "--json")
    assert code == 1 and json.loads(out)["verdict"]["fit"] == "wont_fit"
    code, text, _ = _run(capsys, "--config", conf, "fit", "moe", "--free-gpu", "2GiB", "--free-host", "8GiB")
    assert (
        code == 0 and "verdict: fits" in text and "gpu0" in text and "n_gpu_layers" in text
    )  # much to spare


def test_fit_of_a_truncated_model_says_why_without_a_traceback(
    tmp_path: Path, moe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "--config", str(_config(tmp_path, moe_model)), "fit", "cut", "--free-gpu", "8GiB"
    )
    assert code == 1 and "truncated: tensor" in err and "Traceback" not in err + out


def test_check_reports_a_truncated_model_file_with_the_reason(tmp_path: Path, moe_model: Path) -> None:
    findings = check_models(load_config(_config(tmp_path, moe_model)))
    by_profile = {f.message.split("]")[0].lstrip("["): f for f in findings}
    assert by_profile["moe"].level == "ok"
    assert by_profile["cut"].level == "error" and "truncated: tensor" in by_profile["cut"].message


@pytest.mark.anyio
@pytest.mark.docker
async def test_fit_model_tool_answers_with_the_breakdown_and_refuses_unknown_models(
    daemon: DaemonClient, mcp_setup: Setup, mode: str
) -> None:
    async with Client(make_server(daemon), mode=mode) as client:
        result = await client.call_tool("fit_model", {"model": "fake-a", "free_gpu_bytes": 64 * MiB})
        assert not result.is_error
        data: dict[str, Any] = dict(result.structured_content or {})
        assert data["profile"] == "fake-a" and data["fit"] == "wont_fit"  # 512 MiB of CUDA overhead alone
        assert [d["device"] for d in data["devices"]] == ["host", "gpu0"]
        assert data["devices"][1]["free"] == 64 * MiB and "verdict: wont_fit" in data["summary"]
        # No stated figure and no GPU here: the host part only, against the host's free RAM.
        data = dict((await client.call_tool("fit_model", {"model": "fake-b"})).structured_content or {})
        assert [d["device"] for d in data["devices"]] == ["host"] and data["fit"] == "fits"
        bad = await client.call_tool("fit_model", {"model": "no-such-model"})
        assert bad.is_error
        text = "\n".join(b.text for b in bad.content if isinstance(b, TextContent))
        assert "unknown model 'no-such-model'" in text


def test_free_gpu_memory_counts_what_our_running_model_holds_as_free() -> None:
    from llm_mcp.hardware.fit import free_from_gpu_samples

    samples = [
        {"index": 0, "memory_total_mib": 24576, "memory_used_mib": 20480,
         "processes": [{"pid": 1, "used_mib": 18000, "ours": True},
                       {"pid": 2, "used_mib": 2000, "ours": False}]},
        {"index": 1, "memory_total_mib": None, "memory_used_mib": 1},  # N/A: no figure
    ]  # fmt: skip
    assert free_from_gpu_samples(samples) == {"gpu0": (24576 - 20480 + 18000) * MiB}
