"""What a llama-server log line means: load phase, known failure, offload and speed.

Matches substrings, never prefixes: the prefixes change between llama.cpp builds
(see shared notes/llama-server.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # a stable code an agent can branch on
    message: str
    hint: str


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    failure: Failure


def _p(regex: str, reason: str, message: str, hint: str) -> _Pattern:
    return _Pattern(re.compile(regex, re.IGNORECASE), Failure(reason, message, hint))


FAILURE_PATTERNS: tuple[_Pattern, ...] = (
    _p(r"out of memory|failed to allocate \w+ buffer|unable to allocate \w+ buffer|"
       r"cudaMalloc failed|ErrorOutOfDeviceMemory",
       "out_of_memory", "the GPU ran out of memory while loading the model",
       "lower n_gpu_layers, the context size (ctx_size) or batch sizes, or keep more tensors on "
       "the CPU with override_tensor; check that no other process holds VRAM"),
    _p(r"failed to open GGUF file|No such file or directory",
       "model_missing", "the model file does not exist inside the container",
       "check 'model' and 'models_dir' in models.conf (run `llm-mcp check`)"),
    _p(r"data is not within the file bounds|model is corrupted or incomplete|"
       r"invalid magic characters|failed to read magic|failed to read tensor info|"
       r"error loading model",
       "model_corrupt", "the model file is corrupt, truncated or not a GGUF file",
       "re-download the model file and compare its size/checksum with the source"),
    _p(r"error: invalid argument|unknown argument|error while handling argument|"
       r"invalid value for argument|error: unrecognized",
       "bad_argument", "llama-server rejected a command-line argument",
       "fix 'flags' (or the key named in the log line) in models.conf; "
       "`llama-server --help` in the image lists valid flags"),
    _p(r"couldn't bind HTTP server socket|address already in use|port is already allocated",
       "port_in_use", "the server port is already in use",
       "stop whatever listens on the port (`ss -ltnp`) or change 'port' in models.conf"),
)

_OFFLOAD = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_SPEED = re.compile(r"eval time\s*=\s*[\d.]+ ms\s*/\s*(\d+) (?:tokens|runs).*?([\d.]+) tokens per second")
_PROMPT = re.compile(r"prompt eval time")

# (substring, phase) in the order a load goes through them.
PHASES: tuple[tuple[str, str], ...] = (
    ("loading model", "loading_model"),
    ("load_tensors", "loading_tensors"),
    ("llama_context", "creating_context"),
    ("initializing, n_slots", "creating_context"),
    ("warming up", "warming_up"),
    ("model loaded", "model_loaded"),
    ("listening on", "listening"),
)


def match_failure(line: str) -> Failure | None:
    for pattern in FAILURE_PATTERNS:
        if pattern.regex.search(line):
            return pattern.failure
    return None


def match_phase(line: str) -> str | None:
    for needle, phase in PHASES:
        if needle in line:
            return phase
    return None


def match_offload(line: str) -> tuple[int, int] | None:
    found = _OFFLOAD.search(line)
    return (int(found.group(1)), int(found.group(2))) if found else None


def match_generation_speed(line: str) -> float | None:
    """Tokens/s of generation from a `print_timing` line (prompt eval lines are skipped)."""
    if _PROMPT.search(line):
        return None
    found = _SPEED.search(line)
    return float(found.group(2)) if found else None


def exit_failure(exit_code: int | None, oom_killed: bool) -> Failure:
    """Why the container stopped when no log line said so."""
    if oom_killed:
        return Failure("out_of_memory", "the kernel killed llama-server: the host ran out of RAM",
                       "lower ctx_size or keep fewer tensors in RAM; check `free -h`")
    if exit_code is not None and exit_code >= 128:
        return Failure("crashed", f"llama-server crashed (signal {exit_code - 128})",
                       "read the last log lines; a crash while loading often means an incompatible "
                       "model file or image")
    return Failure("exited", f"llama-server exited with code {exit_code}",
                   "read the last log lines for the cause")


STALLED = Failure("stalled", "the load made no progress (no log output, no health change)",
                  "the model may be on a slow or hung disk, or the server is deadlocked; raise "
                  "stall_timeout in models.conf if loads of this model are legitimately silent")
TIMED_OUT = Failure("timeout", "the load did not finish within load_timeout",
                    "raise load_timeout in models.conf for very large models")
