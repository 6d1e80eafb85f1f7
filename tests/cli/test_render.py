"""The human text the CLI prints, from the daemon's JSON."""

from __future__ import annotations

from llm_mcp.clients import render


def test_durations_read_naturally() -> None:
    assert [render.duration(s) for s in (None, 0.04, 9.84, 75, 3600 * 2 + 14 * 60, 3 * 86400)] == [
        "-", "0.0s", "9.8s", "1m 15s", "2h 14m", "3d 0h"]


def test_the_progress_line_shows_phase_percentage_and_elapsed() -> None:
    job = {"name": "Llama", "phase": "loading_tensors", "elapsed": 4.1, "estimate": 9.8, "progress": 0.42}
    assert render.progress_line(job) == "Llama: loading tensors 42% (4.1s of ~9.8s)"
    first_load = {**job, "estimate": None, "progress": None}
    assert render.progress_line(first_load) == "Llama: loading tensors (4.1s)"


def test_a_failure_says_why_what_to_do_whether_restored_and_the_log() -> None:
    job = {"name": "Big", "result": "failed", "reason": "out_of_memory", "restored": True, "previous": "qwen",
           "message": "the GPU ran out of memory", "hint": "lower n_gpu_layers", "rollback": True,
           "log_lines": ["cudaMalloc failed: out of memory"], "detail": ""}
    assert render.outcome(job).splitlines() == [
        "switch to Big failed: the GPU ran out of memory [out_of_memory]",
        "hint: lower n_gpu_layers",
        "the previous model (qwen) was restored",
        "the log lines that say why:",
        "  cudaMalloc failed: out of memory",
    ]
    not_restored = render.outcome({**job, "restored": False})
    assert "could NOT be restored; nothing is running" in not_restored


def test_status_compares_speed_and_offload_with_the_profile() -> None:
    status = {"state": "ready", "profile": {"id": "qwen", "name": "Qwen", "model": "q.gguf"},
              "container": {"id": "abc", "name": "llm-mcp-default", "image": "img", "uptime": 8040},
              "health": "ok", "speed": {"measured_tps": 70.0, "expected_tps": 140.0, "ratio": 0.5,
                                        "as_expected": False, "source": "verification"},
              "offload": {"layers": 20, "total": 49, "expected": "99", "matches": False},
              "gpu": {"available": True, "gpus": [{"index": 0, "name": "RTX", "memory_used_mib": 100.0,
                                                   "memory_total_mib": 24000.0, "utilization_pct": 3.0}]}}
    text = render.status_text(status)
    assert "speed:      70 t/s vs 140 expected (50%, SLOWER than expected) [verification]" in text
    assert "offload:    20/49 layers on the GPU (does NOT match n_gpu_layers = 99)" in text
    assert "uptime:     2h 14m" in text
    assert "gpu 0:      RTX, 100/24000 MiB, 3% busy" in text
