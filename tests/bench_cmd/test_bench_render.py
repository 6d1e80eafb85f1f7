"""What `llm-mcp bench` and `models` print from the daemon's JSON (pure functions)."""

from __future__ import annotations

import re

from llm_mcp.clients import render

RESULT = {"date": 1796140800.0, "image": "img", "runs": 3, "prompt_tokens": 512, "gen_tokens": 128,
          "load_seconds": {"median": 9.8, "min": 9.8, "max": 9.8},
          "prompt_tps": {"median": 2210.0, "min": 2190.0, "max": 2231.0},
          "gen_tps": {"median": 61.2, "min": 60.8, "max": 61.4},
          "memory_bytes": 18 << 30, "memory_source": "nvml"}


def test_the_results_table_has_medians_with_their_range_failures_and_what_runs_after() -> None:
    job = {"result": "failed", "previous": "qwen", "restored": True, "bench": {
        "order": ["llama", "broken\x1b[2J", "qwen"], "settings": {"prompt_tokens": 512, "gen_tokens": 128,
                                                             "repeat": 3},
        "results": {"llama": RESULT, "broken\x1b[2J": {"error": "out of memory\x1b[2J", "reason": "oom"}}}}
    text = render.bench_results(job)
    assert "512 prompt tokens, 128 generated, 3 runs each" in text
    assert "9.8 s" in text and "2210 t/s (2190-2231)" in text and "61.2 t/s (60.8-61.4)" in text
    assert "18.00 GiB  nvml" in text
    assert "failed: out of memory\\x1b[2J" in text and "\x1b" not in text  # escaped, never raw
    assert re.search(r"^qwen +not measured$", text, re.M)
    assert text.endswith("qwen (running before the bench) restored")


def test_the_models_column_shows_the_median_and_the_day_or_a_dash() -> None:
    assert render.measured_speed(RESULT).startswith("61.2 t/s (")
    assert render.measured_speed(None) == "-"


def test_progress_names_the_profile_its_place_and_the_run() -> None:
    job = {"name": "Llama", "elapsed": 15.0, "phase": "measuring",
           "bench": {"order": ["llama", "qwen"], "index": 0, "step": "measuring", "run": 2,
                     "settings": {"repeat": 3}}}
    assert render.bench_progress(job) == "bench [1/2] Llama: measuring run 2/3 (15.0s)"


def test_status_names_the_last_bench_with_its_profiles_and_how_long_it_took() -> None:
    job = {"kind": "bench", "result": "done", "elapsed": 42.0, "load_seconds": None,
           "bench": {"order": ["llama", "qwen"]}}
    assert render.last_switch(job) == "bench of llama, qwen: done in 42.0s"
