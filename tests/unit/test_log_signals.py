"""What llama-server's log lines mean: failures, phases, offload and speed."""

from __future__ import annotations

import pytest

from llm_mcp.runtime.log_signals import (
    FAILURE_PATTERNS,
    exit_failure,
    match_failure,
    match_generation_speed,
    match_offload,
    match_phase,
)

# Lines as this build of llama-server prints them (notes/llama-server.md, and captured from
# llm-mcp-test/llama-server:cpu), with their prefixes.
FAILURE_TABLE = [
    ("0.00.005.949 E gguf_init_from_file: failed to open GGUF file '/models/missing.gguf' "
     "(No such file or directory)", "model_missing"),
    ("0.00.005.277 E llama_model_load: error loading model: tensor 'blk.0.ffn_down.weight' data is "
     "not within the file bounds, model is corrupted or incomplete", "model_corrupt"),
    ("0.00.004.538 E gguf_init_from_reader: invalid magic characters: 'this', expected 'GGUF'",
     "model_corrupt"),
    ("0.00.004.935 E gguf_init_from_reader: failed to read magic", "model_corrupt"),
    ("0.00.003.100 E srv          start: couldn't bind HTTP server socket, hostname: 0.0.0.0, port: 8080",
     "port_in_use"),
    ("error: invalid argument: --bogus-flag", "bad_argument"),
    ('error while handling argument "-fa": expected value for argument', "bad_argument"),
    ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 20480.00 MiB on device 0: "
     "cudaMalloc failed: out of memory", "out_of_memory"),
    ("alloc_tensor_range: failed to allocate CUDA0 buffer of size 21474836480", "out_of_memory"),
    ("llama_model_load: error loading model: unable to allocate CUDA0 buffer", "out_of_memory"),
    # Docker's own words when the host port is taken.
    ("Bind for 127.0.0.1:8080 failed: port is already allocated", "port_in_use"),
    ("listen tcp4 127.0.0.1:8080: bind: address already in use", "port_in_use"),
]


@pytest.mark.parametrize(("line", "reason"), FAILURE_TABLE)
def test_each_failure_line_maps_to_its_reason(line: str, reason: str) -> None:
    failure = match_failure(line)
    assert failure is not None
    assert failure.reason == reason
    assert failure.message
    assert failure.hint


@pytest.mark.parametrize("line", [
    "0.00.001.271 I srv  llama_server: initializing ...",
    "0.00.004.555 I srv    load_model: loading model '/models/tiny.gguf'",
    "0.00.027.604 I srv  llama_server: model loaded",
    "warning: no usable GPU found, --gpu-layers option will be ignored",
    "0.00.006.298 I srv    operator(): operator(): cleaning up before exit...",
    "load_tensors: offloaded 49/49 layers to GPU",
    "..........................",
])
def test_ordinary_lines_are_not_failures(line: str) -> None:
    assert match_failure(line) is None


def test_every_reason_has_a_message_and_a_hint() -> None:
    reasons = {p.failure.reason for p in FAILURE_PATTERNS}
    assert reasons == {"out_of_memory", "model_missing", "model_corrupt", "bad_argument", "port_in_use"}
    assert all(p.failure.message and p.failure.hint for p in FAILURE_PATTERNS)


@pytest.mark.parametrize(("line", "phase"), [
    ("0.00.004.555 I srv    load_model: loading model '/models/tiny.gguf'", "loading_model"),
    ("main: loading model", "loading_model"),
    ("load_tensors: offloaded 49/49 layers to GPU", "loading_tensors"),
    ("llama_context: n_ctx         = 4096", "creating_context"),
    ("0.00.025.831 I srv    load_model: initializing, n_slots = 4, n_ctx_slot = 256, kv_unified = 'true'",
     "creating_context"),
    ("common_init_from_params: warming up the model with an empty run", "warming_up"),
    ("0.00.027.604 I srv  llama_server: model loaded", "model_loaded"),
    ("main: model loaded", "model_loaded"),
    ("0.00.027.631 I srv  llama_server: listening on http://0.0.0.0:8080", "listening"),
    ("main: server is listening on http://0.0.0.0:8080", "listening"),
    ("0.00.002.986 W srv  llama_server: security: no API key is set", None),
])
def test_load_phases_are_read_from_substrings_not_prefixes(line: str, phase: str | None) -> None:
    assert match_phase(line) == phase


@pytest.mark.parametrize(("line", "expected"), [
    ("load_tensors: offloaded 49/49 layers to GPU", (49, 49)),
    ("0.00.100.000 I load_tensors: offloaded 20/49 layers to GPU", (20, 49)),
    ("load_tensors: offloading 48 repeating layers to GPU", None),
    ("llama_model_loader: - kv  0: general.architecture str = llama", None),
])
def test_the_offload_line_gives_layers_and_total(line: str, expected: tuple[int, int] | None) -> None:
    assert match_offload(line) == expected


def test_generation_speed_comes_from_the_eval_line_and_skips_prompt_eval() -> None:
    head = "0.01.021.321 I slot print_timing: id  0 | task 0 | "
    prompt = (f"{head}prompt eval time =       0.95 ms /    24 "
              "tokens (    0.04 ms per token, 25236.59 tokens per second)")
    generation = (f"{head}       eval time =       0.57 ms /     8 "
                  "tokens (    0.08 ms per token, 12345.68 tokens per second)")
    total = f"{head}      total time =       1.52 ms /    32 tokens"
    assert match_generation_speed(prompt) is None
    assert match_generation_speed(generation) == pytest.approx(12345.68)
    assert match_generation_speed(total) is None
    older = ("llama_perf_context_print:        eval time =    1000.00 ms /   140 runs   "
             "(    7.14 ms per token,   140.00 tokens per second)")
    assert match_generation_speed(older) == pytest.approx(140.0)


@pytest.mark.parametrize(("code", "oom", "reason", "words"), [
    (137, True, "out_of_memory", "ran out of RAM"),
    (139, False, "crashed", "signal 11"),
    (137, False, "crashed", "signal 9"),
    (1, False, "exited", "code 1"),
    (None, False, "exited", "code None"),
])
def test_an_exit_without_a_telling_line_is_named_by_its_code(
    code: int | None, oom: bool, reason: str, words: str
) -> None:
    failure = exit_failure(code, oom)
    assert failure.reason == reason
    assert words in failure.message
