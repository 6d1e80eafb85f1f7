"""The human text the CLI prints, from the daemon's JSON."""

from __future__ import annotations

from llm_mcp.clients import render
from llm_mcp.util.durations import duration


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (None, 0.04, 9.84, 75, 3600 * 2 + 14 * 60, 3 * 86400)] == [
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


# ---- several models ----------------------------------------------------------------------

QWEN = {"id": "qwen", "name": "Qwen", "state": "ready", "engine": "local", "gpus": "0", "port": 8080,
        "endpoint": "http://127.0.0.1:8080", "memory_bytes": 18_500_000_000,
        "container": {"id": "abc", "name": "llm-mcp-default-qwen", "image": "img", "uptime": 8040},
        "health": "ok", "profile": {"id": "qwen", "name": "Qwen", "model": "q.gguf"}}
EMBED = {"id": "embed", "name": "Embed", "state": "loading", "engine": "local", "gpus": "none",
         "endpoint": "http://127.0.0.1:49153",
         "job": {"id": "job-7", "kind": "switch", "profile": "embed", "name": "Embed",
                 "phase": "loading_tensors", "elapsed": 3.0, "estimate": 10.0, "progress": 0.3,
                 "done": False},
         "profile": {"id": "embed", "name": "Embed", "model": "e.gguf"}}
TWO = {"state": "ready", "primary": "qwen", "profile": QWEN["profile"], "endpoint": QWEN["endpoint"],
       "container": QWEN["container"], "health": "ok", "models": [QWEN, EMBED], "jobs": [EMBED["job"]],
       "gpu": {"available": False, "reason": "no NVML"}}


def test_ps_shows_one_row_per_model_within_80_columns() -> None:
    lines = render.ps_table(TWO).splitlines()
    assert lines[0].split() == ["ID", "ENGINE", "GPUS", "STATE", "MEMORY", "REQ", "TTL", "SERVER", "UPTIME"]
    assert lines[1].split() == ["qwen", "local", "0", "ready", "17.2", "GiB", "-", "-", "127.0.0.1:8080",
                                "2h14m"]
    assert lines[2].split() == ["embed", "local", "none", "loading", "30%", "-", "-", "-",
                                "127.0.0.1:49153", "-"]
    assert len(lines) == 3 and max(map(len, lines)) <= 80


def test_ps_with_nothing_running_is_one_line_with_a_hint() -> None:
    for status in ({"state": "stopped", "models": []}, {"state": "stopped", "profile": None}):
        text = render.ps_table(status)
        assert text.startswith("nothing is running") and "llm-mcp switch ID" in text and "\n" not in text


def test_ps_reads_a_single_model_daemon_from_its_top_level_fields() -> None:
    old = {"state": "ready", "profile": {"id": "qwen", "name": "Qwen", "model": "q.gguf"},
           "endpoint": "http://127.0.0.1:8080", "container": QWEN["container"]}
    lines = render.ps_table(old).splitlines()
    assert len(lines) == 2 and lines[1].split()[:4] == ["qwen", "local", "all", "ready"]


def test_status_of_several_models_has_one_block_each() -> None:
    text = render.status_text(TWO)
    blocks = text.split("\n\n")
    assert blocks[0] == "models:     2 (1 ready)"
    assert blocks[1].splitlines()[:3] == ["model:      Qwen [qwen] q.gguf", "state:      ready",
                                         "placement:  engine local, gpus 0"]
    assert "memory:     17.23 GiB" in blocks[1] and "uptime:     2h 14m" in blocks[1]
    assert blocks[2].splitlines()[:3] == ["model:      Embed [embed] e.gguf", "state:      loading",
                                         "placement:  engine local, gpus none"]
    assert "switching:  Embed: loading tensors 30% (3.0s of ~10.0s) (job job-7)" in blocks[2]
    assert blocks[3] == "gpu:        none (no NVML)"


def test_status_of_one_model_reads_as_it_always_did() -> None:
    one = {**TWO, "models": [QWEN], "jobs": []}
    old = {k: v for k, v in one.items() if k not in ("models", "jobs", "primary")}
    assert render.status_text(one, now=1.0) == render.status_text(old, now=1.0)
    assert render.status_text(one, now=1.0).splitlines()[:2] == ["state:      ready",
                                                                 "model:      Qwen [qwen] q.gguf"]


MODELS = [
    {"id": "qwen", "name": "Qwen", "model": "qwen.gguf", "current": True, "running": "ready",
     "engine": "local", "gpus": "0", "ctx_size": 32768, "n_gpu_layers": 99, "speed": 140.0,
     "fit": {"verdict": "fits"}},
    {"id": "llama", "name": "Llama", "model": "llama.gguf", "current": False, "engine": "local",
     "gpus": "all", "ctx_size": 8192, "n_gpu_layers": "all", "would_replace": ["qwen"],
     "fit": {"verdict": "fits"}},
    {"id": "embed", "name": "Embed", "model": "e.gguf", "current": False, "engine": "local", "gpus": "none",
     "ctx_size": 2048, "would_replace": [], "fit": {"verdict": "fits"}},
]


def test_models_shows_where_each_runs_and_what_a_switch_would_replace() -> None:
    lines = render.models_table(MODELS).splitlines()
    assert lines[0].split() == ["ID", "NAME", "MODEL", "WHERE", "CTX", "GPU", "LAYERS", "SPEED", "MEASURED",
                                "LOAD", "FIT", "REPLACES"]
    rows = {line[3:].split()[0]: line for line in lines[1:4]}
    assert rows["qwen"].startswith("*") and "local/0" in rows["qwen"]
    assert rows["llama"].split()[3] == "local/all" and rows["llama"].split()[-1] == "qwen"
    assert rows["embed"].split()[3] == "local/none" and rows["embed"].split()[-1] == "-"
    assert lines[-1].startswith("* running now; REPLACES:")
    assert max(map(len, lines[:4])) <= 120


def test_models_of_a_single_model_daemon_have_no_replaces_column() -> None:
    new_keys = ("running", "engine", "gpus", "would_replace")
    old = [{k: v for k, v in m.items() if k not in new_keys} for m in MODELS]
    lines = render.models_table(old).splitlines()
    assert "REPLACES" not in lines[0] and "local/all" in lines[1] and lines[-1] == "* running now"


def test_stop_and_unload_outcomes_say_what_stopped() -> None:
    assert render.outcome({"kind": "stop", "result": "stopped", "stops": ["qwen"]}) == "the model is stopped"
    assert render.outcome({"kind": "stop", "result": "stopped", "stops": ["qwen", "embed"]}) == (
        "every model is stopped (qwen, embed)")
    assert render.outcome({"kind": "unload", "result": "stopped", "profile": "embed", "name": "Embed"}) == (
        "Embed is stopped; the other models keep serving")
    switched = {"kind": "switch", "result": "ready", "profile": "llama", "name": "Llama", "load_seconds": 9.8,
                "stops": ["qwen"]}
    assert render.outcome(switched) == "Llama is ready (loaded in 9.8s); it replaced qwen"


# ---- the model endpoint ([proxy]): where it listens, each model's requests and ttl -----------

SERVED = {"address": "127.0.0.1:8090", "error": None, "url": "http://127.0.0.1:8090/v1"}
BUSY = {**QWEN, "requests": {"in_flight": 2, "queued": 1}, "ttl": {"seconds": 300.0, "remaining": None},
        "preload": True}
IDLE = {**EMBED, "state": "ready", "job": None, "requests": {"in_flight": 0, "queued": 0},
        "ttl": {"seconds": 300.0, "remaining": 252.4}}
SERVING = {**TWO, "models": [BUSY, IDLE], "jobs": [], "proxy": SERVED}


def test_status_says_where_the_endpoint_serves_and_each_models_requests_and_ttl() -> None:
    blocks = render.status_text(SERVING).split("\n\n")
    assert blocks[0].splitlines() == [
        "models:     2 (2 ready)",
        "endpoint:   http://127.0.0.1:8090/v1 (OpenAI and Anthropic; any model, loaded on demand)"]
    assert "requests:   2 in flight, 1 queued" in blocks[1]
    assert "ttl:        unloaded after 5m00s idle; paused while requests run" in blocks[1]
    assert "preload:    yes (loaded when the daemon starts)" in blocks[1]
    assert "server:     http://127.0.0.1:8080" in blocks[1]
    assert "ttl:        4m12s left (unloaded after 5m00s idle)" in blocks[2]
    assert "requests:" not in blocks[2] and "preload:" not in blocks[2]


def test_status_of_one_model_shows_the_endpoint_and_its_requests() -> None:
    one = {**SERVING, "models": [BUSY]}
    lines = render.status_text(one).splitlines()
    assert lines[:2] == ["state:      ready",
                         "endpoint:   http://127.0.0.1:8090/v1 (OpenAI and Anthropic; any model, loaded on "
                         "demand)"]
    assert "requests:   2 in flight, 1 queued" in lines


def test_status_says_why_the_endpoint_is_not_served() -> None:
    failed = {**TWO, "proxy": {"address": None, "url": None,
                               "error": "cannot serve the model endpoint on 127.0.0.1:8090: in use"}}
    text = render.status_text(failed)
    assert "endpoint:   NOT SERVED: cannot serve the model endpoint on 127.0.0.1:8090: in use" in text
    off = render.status_text({**TWO, "proxy": {"address": None, "url": None, "error": None}})
    assert "endpoint:" not in off and off == render.status_text(TWO)


def test_ps_shows_requests_and_ttl_left_within_80_columns() -> None:
    lines = render.ps_table(SERVING).splitlines()
    assert lines[1].split()[6:9] == ["2+1q", "busy", "127.0.0.1:8080"]
    assert lines[2].split()[4:8] == ["-", "-", "4m12s", "127.0.0.1:49153"]
    only_flight = {**SERVING, "models": [{**BUSY, "requests": {"in_flight": 3, "queued": 0}}]}
    assert render.ps_table(only_flight).splitlines()[1].split()[6] == "3"
    assert max(map(len, lines)) <= 80
