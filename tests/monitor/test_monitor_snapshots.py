"""What the screen shows, as SVG snapshots (pytest-textual-snapshot).

The data comes from the STAND-IN client in standin.py (scripted status and
events, frozen clock), so every snapshot is the same on every machine. Review
the diff report before `pytest --snapshot-update`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from textual.pilot import Pilot

from monitor import make_app
from monitor.app import MonitorApp
from tests.monitor import standin as S

SIZE = (120, 36)
SMALL_AND_LARGE = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
CURRENT = S.MODELS[0]


def gpu_history(samples: int = 90) -> list[dict[str, Any]]:
    """About a minute and a half of GPU samples with some shape to them."""
    events = []
    for i in range(samples):
        util = (round(55 + 40 * math.sin(i / 7)), round(10 + 8 * math.sin(i / 4)))
        mem = (20480.0 + 40 * i, 6144.0)
        events.append(S.envelope(i + 1, "gpu", S.gpu_snapshot(util=util, mem=mem)))
    return events


def system_history(samples: int = 90, container: bool = True) -> list[dict[str, Any]]:
    return [S.envelope(1000 + i, "system", S.system_sample(cpu=round(20 + 15 * math.sin(i / 5)),
                                                            container=container))
            for i in range(samples)]


def scenario(status: dict[str, Any], events: list[dict[str, Any]],
             lines: list[dict[str, Any]] | None = None, **kwargs: Any) -> tuple[MonitorApp, Any]:
    client = S.StandInClient(status, lines=S.load_lines() if lines is None else lines, events=events,
                             **kwargs)
    app = make_app(lambda: client, clock=S.frozen_clock)

    async def settle(pilot: Pilot[None]) -> None:
        await client.drained.wait()
        while app.catching_up:
            await pilot.pause(0.02)
        app.flush_logs()
        await pilot.pause()

    return app, settle


def test_nothing_running(snap_compare: Any) -> None:
    idle = [S.envelope(i + 1, "gpu", S.gpu_snapshot(util=(0, 0), mem=(310.0, 120.0), temps=(34, 31),
                                                       idle=True))
            for i in range(30)]
    app, settle = scenario(S.status("stopped", None), idle + system_history(30, container=False), lines=[])
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_ready_with_two_gpus(snap_compare: Any) -> None:
    app, settle = scenario(S.status("ready", CURRENT, measured=151.2), gpu_history() + system_history())
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_picker_open(snap_compare: Any) -> None:
    app, settle = scenario(S.status("ready", CURRENT, measured=151.2), gpu_history() + system_history())
    assert snap_compare(app, press=["m"], terminal_size=SIZE, run_before=settle)


def test_switch_in_progress(snap_compare: Any) -> None:
    job = S.job("gpt-oss", "gpt-oss 120B", previous="qwen3-coder")
    lines = [*S.load_lines(), S.log_line(20, "--- switching to gpt-oss 120B ---", "separator"),
             S.log_line(21, "0.00.013.120 I srv    load_model: loading model "
                        "'/models/gpt-oss-120b-mxfp4.gguf'"),
             S.log_line(22, "0.00.410.877 I load_tensors: offloading 36 repeating layers to GPU")]
    app, settle = scenario(S.status("loading", S.MODELS[1], job=job, reason="loading gpt-oss 120B"),
                           gpu_history() + system_history(), lines=lines)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


@SMALL_AND_LARGE
def test_switch_failed_with_previous_restored(snap_compare: Any, size: tuple[int, int]) -> None:
    hint = ("lower n_gpu_layers, the context size (ctx_size) or batch sizes, or keep more tensors on the CPU "
            "with override_tensor; check that no other process holds VRAM")  # the daemon's own, in full
    failed = S.job("gemma3", "Gemma 3 27B", phase="failed", elapsed=8.7, done=True, result="failed",
                   previous="qwen3-coder", restored=True, reason="out_of_memory",
                   message="the GPU ran out of memory while loading the model", hint=hint,
                   log_lines=["0.00.310.877 I load_tensors: offloading 62 repeating layers to GPU",
                              "0.00.310.901 I load_tensors: offloaded 63/63 layers to GPU",
                              "0.01.020.311 E ggml_backend_cuda_buffer_type_alloc_buffer: allocating "
                              "18944.00 MiB on device 0: cudaMalloc failed: out of memory",
                              "0.01.020.330 E alloc_tensor_range: failed to allocate CUDA0 buffer of size "
                              "19864223744",
                              "0.01.020.402 E llama_model_load: error loading model: unable to allocate "
                              "CUDA0 buffer",
                              "0.01.020.410 E llama_model_load_from_file_impl: failed to load model",
                              "0.01.020.500 E srv    load_model: failed to load model, "
                              "'/models/gemma-3-27b-it-Q4_K_M.gguf'",
                              "0.01.020.600 I srv    operator(): operator(): cleaning up before exit..."])
    status = S.status("ready", CURRENT, last=failed, measured=149.8,
                      reason="switch to Gemma 3 27B failed (out_of_memory); Qwen3 Coder 30B restored",
                      hint=hint)
    app, settle = scenario(status, gpu_history() + system_history())
    assert snap_compare(app, terminal_size=size, run_before=settle)


@SMALL_AND_LARGE
def test_no_gpu(snap_compare: Any, size: tuple[int, int]) -> None:
    events = [S.envelope(1, "gpu", S.NO_GPU), *system_history(30)]
    app, settle = scenario(S.status("ready", CURRENT, gpu=S.NO_GPU, measured=14.2), events)
    assert snap_compare(app, terminal_size=size, run_before=settle)


@SMALL_AND_LARGE
def test_picker_with_fit_verdicts_and_measured_speed(snap_compare: Any, size: tuple[int, int]) -> None:
    app, settle = scenario(S.status("ready", CURRENT, measured=151.2), gpu_history() + system_history(),
                           models=S.models_with_facts())
    assert snap_compare(app, press=["m", "down", "down"], terminal_size=size, run_before=settle)


@SMALL_AND_LARGE
def test_bench_comparison(snap_compare: Any, size: tuple[int, int]) -> None:
    app, settle = scenario(S.status("ready", CURRENT, measured=151.2), gpu_history() + system_history(),
                           models=S.models_with_facts())
    assert snap_compare(app, press=["c"], terminal_size=size, run_before=settle)


def test_wont_fit_refusal(snap_compare: Any) -> None:
    def refuse(method: str, params: dict[str, Any]) -> Any:
        if method == "switch" and not params.get("force"):
            raise S.wont_fit_error(params["model"])
        return None

    app, settle = scenario(S.status("ready", CURRENT, measured=151.2), gpu_history() + system_history(),
                           models=S.models_with_facts(), on_call=refuse)
    assert snap_compare(app, press=["m", "3"], terminal_size=(80, 24), run_before=settle)


def test_bench_in_progress(snap_compare: Any) -> None:
    done = {"qwen3-coder-bench-q8": S.measured(118.6, 2410.0, 9.8)}
    running = S.bench_job(["qwen3-coder-bench-q8", "gpt-oss-cpu-moe"], index=1, run=2, results=done)
    status = S.status("ready", S.MODELS[4], job=running, measured=19.4)
    app, settle = scenario(status, gpu_history() + system_history(), models=S.models_with_facts())
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


# ---- several models at once (a daemon with status.models and list_models' would_replace) ----

MIXED_LOG = [S.model_line(1, None, "--- switching to Qwen3 Coder 30B ---", "separator"),
             S.model_line(2, "qwen3-coder", "0.00.310.901 I load_tensors: offloaded 49/49 layers to GPU"),
             S.model_line(3, "qwen3-coder", "0.06.380.921 I srv  llama_server: model loaded"),
             S.model_line(4, None, "--- starting Gemma 3 27B beside Qwen3 Coder 30B ---", "separator"),
             S.model_line(5, "gemma3", "0.00.310.901 I load_tensors: offloaded 63/63 layers to GPU"),
             S.model_line(6, "gemma3", "0.05.990.017 W llama_context: n_ctx_per_seq (32768) < n_ctx_train"),
             S.model_line(7, "nomic-embed", "0.00.013.120 I srv    load_model: loading model "
                          "'/models/nomic-embed-text-v2-Q8_0.gguf'"),
             S.model_line(8, "qwen3-coder", "0.09.120.004 I slot      release: id  0 | task 12 | "
                          "stop processing")]


def several_scenario(rows: list[dict[str, Any]]) -> tuple[MonitorApp, Any]:
    running = {r["id"]: r["state"] for r in rows}
    return scenario(S.several(rows, "qwen3-coder"), gpu_history() + system_history(), lines=MIXED_LOG,
                    models=S.entries(running))


def three_running() -> list[dict[str, Any]]:
    return [S.running_model("qwen3-coder", measured=151.2, port=8081),
            S.running_model("gemma3", measured=36.0, port=8082, uptime=610, health="unresponsive"),
            S.running_model("nomic-embed", "loading", port=8083, uptime=12, reason="loading Nomic Embed v2")]


@SMALL_AND_LARGE
def test_three_models_running(snap_compare: Any, size: tuple[int, int]) -> None:
    app, settle = several_scenario(three_running())
    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_log_of_one_model(snap_compare: Any) -> None:
    app, settle = several_scenario(three_running())
    assert snap_compare(app, press=["l", "l"], terminal_size=(120, 40), run_before=settle)


@SMALL_AND_LARGE
def test_picker_says_what_a_pick_replaces(snap_compare: Any, size: tuple[int, int]) -> None:
    app, settle = several_scenario(three_running()[:2])
    assert snap_compare(app, press=["m", "down"], terminal_size=size, run_before=settle)


def test_stop_which_model(snap_compare: Any) -> None:
    app, settle = several_scenario(three_running())
    assert snap_compare(app, press=["s"], terminal_size=(80, 24), run_before=settle)


# ---- the model endpoint ([proxy]): its address, each model's requests and ttl ----------------

SERVED = {"address": "127.0.0.1:8090", "error": None, "url": "http://127.0.0.1:8090/v1"}


def serving_rows() -> list[dict[str, Any]]:
    rows = three_running()
    rows[0].update(requests={"in_flight": 2, "queued": 1}, ttl={"seconds": 600.0, "remaining": None})
    rows[1].update(requests={"in_flight": 0, "queued": 0}, ttl={"seconds": 300.0, "remaining": 252.0})
    rows[2].update(requests={"in_flight": 0, "queued": 3})
    return rows


@SMALL_AND_LARGE
def test_endpoint_with_requests_and_ttl(snap_compare: Any, size: tuple[int, int]) -> None:
    rows = serving_rows()
    status = {**S.several(rows, "qwen3-coder"), "proxy": SERVED}
    app, settle = scenario(status, gpu_history() + system_history(), lines=MIXED_LOG,
                           models=S.entries({r["id"]: r["state"] for r in rows}))
    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_endpoint_with_one_model_counting_down(snap_compare: Any) -> None:
    row = {**S.running_model("qwen3-coder", measured=151.2, port=8081),
           "requests": {"in_flight": 0, "queued": 0}, "ttl": {"seconds": 300.0, "remaining": 42.0}}
    status = {**S.several([row], "qwen3-coder"), "proxy": SERVED}
    app, settle = scenario(status, gpu_history() + system_history(), lines=MIXED_LOG,
                           models=S.entries({"qwen3-coder": "ready"}))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)
