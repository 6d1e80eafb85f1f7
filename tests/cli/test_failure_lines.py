"""The log lines that say why a switch failed come first, in every front end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llm_mcp.clients import render
from llm_mcp.clients.mcp_server import failure_text
from llm_mcp.runtime.failure_lines import failure_lines, relevant_first

# A CUDA build on a machine whose GPU is busy: warnings first, the cause eighth, noise after it.
LOG = [
    "0.00.000.100 W ggml_cuda_init: found 1 CUDA devices (Total VRAM: 24080 MiB):",
    "0.00.000.200 W   Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes",
    "0.00.001.271 I srv  llama_server: initializing ...",
    "0.00.002.986 W srv  llama_server: security: no API key is set and CORS allows all origins",
    "0.00.004.555 I srv    load_model: loading model '/models/big.gguf'",
    "0.00.005.000 W llama_model_load: failed to mmap, falling back to read (warning only)",
    "0.00.006.000 I load_tensors: offloading 48 repeating layers to GPU",
    "0.00.007.000 E ggml_backend_cuda_buffer_type_alloc_buffer: allocating 20480.00 MiB on device 0: "
    "cudaMalloc failed: out of memory",
    "0.00.007.100 E alloc_tensor_range: failed to allocate CUDA0 buffer of size 21474836480",
    "0.00.007.200 E llama_model_load: error loading model: unable to allocate CUDA0 buffer",
    "0.00.007.300 E llama_model_load_from_file_impl: failed to load model",
    "0.00.007.400 E cmn  common_init_: failed to load model '/models/big.gguf'",
    "0.00.007.500 E srv    load_model: failed to load model, '/models/big.gguf'",
    "0.00.007.600 I srv    operator(): operator(): cleaning up before exit...",
    "0.00.007.700 E srv  llama_server: exiting due to model loading error",
    "0.00.007.800 W ggml_cuda: freeing device buffers",
]


def test_the_cause_comes_first_and_the_gpu_warnings_last() -> None:
    picked = failure_lines(LOG, 25)
    assert picked.why[0] == LOG[7]  # the line that names the cause, not the GPU banner
    assert picked.why[:3] == [LOG[7], LOG[8], LOG[9]]  # known causes, in log order
    assert all(" E " in line for line in picked.why)
    assert LOG[0] in picked.other and LOG[5] in picked.other  # a warning with "failed" is not a cause
    assert sorted(picked.ordered()) == sorted(LOG)


def test_a_limit_keeps_the_causes_and_the_most_recent_other_lines() -> None:
    picked = failure_lines(LOG, 10)
    assert len(picked.ordered()) == 10
    assert picked.why[0] == LOG[7]
    assert len(picked.why) == 7 and picked.other == [LOG[6], LOG[13], LOG[15]]


def test_lines_without_llama_cpp_prefixes_are_judged_by_their_words() -> None:
    lines = ["booting", "GGML_ASSERT(src0->type == GGML_TYPE_F32) failed", "Segmentation fault (core dumped)",
             "bye"]
    assert relevant_first(lines) == [lines[1], lines[2], lines[0], lines[3]]


def test_no_cause_found_keeps_the_log_order() -> None:
    lines = ["a", "b", "c"]
    assert failure_lines(lines).why == [] and relevant_first(lines) == lines
    assert failure_lines(lines, 2).other == ["b", "c"]
    assert failure_lines(lines, 0).ordered() == []


@given(st.lists(st.sampled_from(LOG) | st.text(max_size=20), max_size=40), st.integers(0, 50))
def test_the_result_is_a_bounded_reordering_of_the_input(lines: list[str], limit: int) -> None:
    out = relevant_first(lines, limit)
    assert len(out) == min(limit, len(lines))
    remaining = list(lines)
    for line in out:
        remaining.remove(line)  # every line once, nothing invented


def test_the_cli_shows_the_cause_under_its_own_heading_first() -> None:
    text = render.outcome({"name": "Big", "result": "failed", "reason": "out_of_memory", "message": "oom",
                           "log_lines": LOG})
    lines = text.splitlines()
    why = lines.index("the log lines that say why:")
    assert lines[why + 1] == "  " + LOG[7]
    assert lines.index("other recent log lines:") > why
    assert lines[-1] == "  " + LOG[15]


def test_the_mcp_error_shows_the_cause_first() -> None:
    text = failure_text({"id": "job-1", "name": "Big", "result": "failed", "reason": "out_of_memory",
                         "message": "oom", "phases": [], "log_lines": LOG})
    lines = text.splitlines()
    assert lines[lines.index("the log lines that say why:") + 1] == "  " + LOG[7]
