"""What the MCP server says: progress messages, error texts, summaries, the bind check (no Docker)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_mcp import protocol
from llm_mcp.clients.mcp_server import (
    check_bind,
    describe_error,
    failure_text,
    models_summary,
    percent,
    progress_message,
    status_summary,
    switch_summary,
    unload_summary,
)
from llm_mcp.protocol import ProtocolError
from llm_mcp.wire import ModelEntry


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "job-1", "profile": "qwen", "name": "Qwen", "phase": "loading_tensors", "elapsed": 5.1,
            "estimate": 12.0, "progress": 0.425, "phases": [], "log_lines": [], **fields}


def test_progress_message_has_the_phase_percentage_estimate_and_elapsed_time() -> None:
    assert progress_message(job(), percent(job())) == "loading_tensors · 42% of ~12s · 5.1s elapsed · Qwen"


def test_a_first_load_shows_the_phase_place_and_says_there_is_no_estimate() -> None:
    first = job(estimate=None, progress=None)
    assert percent(first) == 30
    assert progress_message(first, 30) == ("loading_tensors · ~30% (first load, no estimate yet) · 5.1s "
                                           "elapsed · Qwen")


def test_percentage_is_at_least_the_phase_place_and_never_100_before_ready() -> None:
    assert percent(job(phase="creating_context", progress=0.5)) == 80
    assert percent(job(progress=0.99, elapsed=40.0)) == 99
    assert "slower than usual" in progress_message(job(elapsed=40.0), 99)


def test_a_failure_names_reason_hint_rollback_phase_and_log_lines() -> None:
    text = failure_text(job(result="failed", reason="out_of_memory", message="the GPU ran out of memory",
                            hint="lower n_gpu_layers", restored=True, previous="glm", elapsed=8.2,
                            phases=[{"phase": "loading_tensors"}, {"phase": "failed"}],
                            log_lines=["line one", "cudaMalloc failed: out of memory"]))
    assert text.splitlines() == [
        "switch to Qwen failed: the GPU ran out of memory [reason: out_of_memory]",
        "hint: lower n_gpu_layers",
        "the previous model 'glm' was restored and is ready",
        "job job-1, failed after 8.2s in phase loading_tensors",
        "the log lines that say why:",
        "  cudaMalloc failed: out of memory",
        "other recent log lines:",
        "  line one",
    ]


def test_a_replaced_switch_says_which_job_replaced_it() -> None:
    text = failure_text(job(result="cancelled", replaced_by="job-2"))
    assert "cancelled" in text and "job-2" in text and "status" in text


def test_busy_error_names_the_job_and_both_ways_out() -> None:
    err = ProtocolError(protocol.BUSY, "busy", {"reason": "busy", "job": job()})
    text = describe_error(err)
    assert "job-1" in text and "'qwen'" in text and "force=true" in text and "joins" in text
    assert text.startswith("busy: a switch to 'qwen' that conflicts with this request is in progress")
    unload = describe_error(ProtocolError(protocol.BUSY, "busy", {"job": job(kind="unload")}))
    assert unload.startswith("busy: an unload of 'qwen' that conflicts")
    stop = describe_error(ProtocolError(protocol.BUSY, "busy", {"job": job(kind="stop", profile=None)}))
    assert stop.startswith("busy: a stop of every model that conflicts")


def test_other_errors_keep_message_reason_and_hint() -> None:
    err = ProtocolError(protocol.CONFIG_ERROR, "models.conf:3: bad key", {"reason": "config_error",
                                                                         "hint": "fix models.conf"})
    assert describe_error(err) == "models.conf:3: bad key [reason: config_error]\nhint: fix models.conf"


def test_status_summary_of_a_ready_model_with_speed_offload_and_no_gpu() -> None:
    status = {"state": "ready", "profile": {"id": "qwen", "name": "Qwen"}, "endpoint": "http://127.0.0.1:8080",
              "speed": {"measured_tps": 41.0, "expected_tps": 50.0, "as_expected": True},
              "offload": {"layers": 49, "total": 49, "matches": True},
              "gpu": {"available": False, "reason": "NVML not found"}}
    assert status_summary(status) == (
        "ready: Qwen (qwen) at http://127.0.0.1:8080; speed 41 t/s vs 50 expected (as expected); "
        "offload 49/49 layers matches the profile; GPU: none visible (NVML not found)")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_other_hosts_need_allow_remote(host: str) -> None:
    with pytest.raises(ValueError, match="--allow-remote"):
        check_bind(host, allow_remote=False)
    check_bind(host, allow_remote=True)


def test_status_summary_ends_with_the_config_warnings() -> None:
    summary = status_summary({"state": "stopped", "config_warnings": [
        "/m.conf:2: [defaults] host: 0.0.0.0 is not a loopback address: ..."]})
    assert summary == ("stopped: no model loaded; warning: /m.conf:2: [defaults] host: 0.0.0.0 is not a "
                       "loopback address: ...")


def test_status_summary_says_when_a_ready_server_stops_answering_and_what_to_do() -> None:
    summary = status_summary({
        "state": "ready", "profile": {"id": "qwen", "name": "Qwen"}, "endpoint": "http://127.0.0.1:8080",
        "health": "unresponsive",
        "health_detail": {"status": "unresponsive", "message": "the container is paused: llama-server "
                          "cannot answer /health", "hint": "`docker unpause x` to resume it"}})
    assert "NOT ANSWERING: the container is paused" in summary
    assert summary.endswith("hint: `docker unpause x` to resume it")


def test_status_summary_says_the_state_dir_is_not_writable() -> None:
    summary = status_summary({"state": "stopped", "state_dir": {
        "path": "/s", "writable": False, "error": "No space left on device: /s/logs/x.log"}})
    assert "state dir NOT WRITABLE (No space left on device: /s/logs/x.log)" in summary


# ---- several models --------------------------------------------------------------------

def running(model_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": model_id, "name": model_id.title(), "state": "ready", "engine": "local", "gpus": "all",
            "endpoint": f"http://127.0.0.1:{8000 + len(model_id)}", **fields}


def test_status_summary_of_several_models_has_one_line_each_with_engine_gpus_state_endpoint() -> None:
    status = {"state": "ready", "profile": {"id": "qwen", "name": "Qwen"}, "endpoint": "http://127.0.0.1:8004",
              "models": [running("qwen", gpus="0"),
                         running("embed", state="loading", gpus="none",
                                 job=job(profile="embed", name="Embed"))],
              "gpu": {"available": False, "reason": "no NVML"}}
    assert status_summary(status).splitlines() == [
        "2 models (1 ready):",
        "- qwen (Qwen): ready · engine local · gpus 0 · http://127.0.0.1:8004",
        "- embed (Embed): loading · engine local · gpus none · http://127.0.0.1:8005; switch job job-1: "
        "loading_tensors · 42% of ~12s · 5.1s elapsed · Embed",
        "GPU: none visible (no NVML)",
    ]


def test_status_summary_of_one_model_from_a_new_daemon_names_its_engine_and_gpus() -> None:
    status = {"state": "ready", "profile": {"id": "qwen", "name": "Qwen"}, "endpoint": "http://127.0.0.1:8004",
              "models": [running("qwen", gpus="0")]}
    assert status_summary(status) == "ready: Qwen (qwen) at http://127.0.0.1:8004 (engine local, gpus 0)"


def test_a_newline_in_a_reason_never_makes_a_line_of_its_own() -> None:
    status = {"models": [running("a", state="failed", reason="x\n- b (B): ready"), running("b")]}
    lines = status_summary(status).splitlines()
    assert len(lines) == 3 and "\\x0a" in lines[1]


def test_models_summary_says_where_each_runs_and_what_a_switch_replaces() -> None:
    models = [ModelEntry.model_validate(m) for m in (
        {"id": "qwen", "name": "Qwen", "running": "ready", "current": True, "gpus": "0"},
        {"id": "big", "name": "Big", "would_replace": ["qwen"], "exclusive": True,
         "fit": {"verdict": "tight", "message": "x"}},
        {"id": "embed", "name": "Embed", "gpus": "none"},
    )]
    assert models_summary(models).splitlines() == [
        "qwen (Qwen): ready on local/0",
        "big (Big): not running; would run on local/all, exclusive; a switch replaces qwen; fit tight",
        "embed (Embed): not running; would run on local/none; a switch stops nothing",
    ]


def test_switch_and_unload_summaries_say_what_stopped_and_what_keeps_serving() -> None:
    done = job(result="ready", done=True, load_seconds=9.8, stops=["qwen", "embed"], profile="big",
               name="Big")
    assert switch_summary(done, waited=True) == "Big is ready (loaded in 9.8s); it replaced qwen, embed"
    assert switch_summary({**done, "stops": []}, waited=True) == "Big is ready (loaded in 9.8s)"
    started = job(stops=["qwen"], profile="big", name="Big")
    assert switch_summary(started, waited=False) == ("switching to Big: job job-1, phase loading_tensors; "
                                                     "stopping qwen; call status to follow it")
    unloaded = {"kind": "unload", "profile": "embed", "name": "Embed", "result": "stopped", "done": True}
    assert unload_summary(unloaded, ["qwen"]) == "Embed (embed) is stopped; still running: qwen"
    assert unload_summary(unloaded, []) == "Embed (embed) is stopped; nothing else is running"
