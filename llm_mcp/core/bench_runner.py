"""Measuring a loaded llama-server: prompt and generation tokens/s from its own timings, and memory.

The core loads each profile through the normal switch steps; this module measures
the server once it is ready. Every run sends a prompt of exactly N token ids
(llama-server's /completion takes a list of ids) with the prompt cache off, so
each run processes the whole prompt, and asks for exactly M generated tokens
(end-of-sequence ignored). One unmeasured warm-up run comes first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from llm_mcp.core.bench_store import spread
from llm_mcp.runtime.health import Probe

MIB = 1 << 20
RUN_TIMEOUT = 600.0  # one run of a big model on a slow machine; past it the profile fails
# Any text will do: its token ids are repeated to the length asked for.
PROMPT_TEXT = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
               "How vexingly quick daft zebras jump! 0123456789")


@dataclass(frozen=True, slots=True)
class BenchSettings:
    prompt_tokens: int = 512
    gen_tokens: int = 128
    repeat: int = 3

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class BenchError(Exception):
    """This profile could not be measured (the reason is for people)."""


def prompt_ids(sample: list[int], count: int) -> list[int]:
    """Exactly `count` token ids, `sample` repeated."""
    if not sample:
        raise BenchError("the server's tokenizer returned no tokens for the bench prompt")
    return list(itertools.islice(itertools.cycle(sample), count))


async def measure(probe: Probe, settings: BenchSettings,
                  on_run: Callable[[int], None] = lambda run: None) -> dict[str, Any]:
    """Runs, prompt_tps and gen_tps (median/min/max over `repeat` runs) of the server behind `probe`."""
    need = settings.prompt_tokens + settings.gen_tokens
    n_ctx = await probe.slot_context()
    if n_ctx is not None and need > n_ctx:
        raise BenchError(f"{settings.prompt_tokens} prompt + {settings.gen_tokens} generated tokens do not "
                         f"fit one slot's context of {n_ctx} tokens; lower --prompt-tokens/--gen-tokens, "
                         "or raise ctx_size (it is shared by --parallel slots)")
    sample = await probe.tokenize(PROMPT_TEXT)
    if sample is None:
        raise BenchError("the server did not tokenize the bench prompt (/tokenize)")
    prompt = prompt_ids(sample, settings.prompt_tokens)
    warm = await probe.timed_completion(prompt, min(settings.gen_tokens, 8), RUN_TIMEOUT)
    if warm.error is not None:
        raise BenchError(f"the warm-up completion failed: {warm.error}")
    prompt_tps: list[float] = []
    gen_tps: list[float] = []
    for run in range(1, settings.repeat + 1):
        on_run(run)
        done = await probe.timed_completion(prompt, settings.gen_tokens, RUN_TIMEOUT)
        if done.error is not None or done.timings is None:
            raise BenchError(f"run {run} failed: {done.error}")
        prompt_tps.append(_rate(done.timings, "prompt", settings.prompt_tokens, run))
        gen_tps.append(_rate(done.timings, "predicted", settings.gen_tokens, run))
    return {"runs": settings.repeat, "prompt_tokens": settings.prompt_tokens,
            "gen_tokens": settings.gen_tokens, "prompt_tps": spread(prompt_tps), "gen_tps": spread(gen_tps)}


def _rate(timings: Mapping[str, float], part: str, expected: int, run: int) -> float:
    """tokens/s of one part of a run, after checking the server did the whole part."""
    count, rate = timings.get(f"{part}_n"), timings.get(f"{part}_per_second")
    if count != expected:
        what = "processed" if part == "prompt" else "generated"
        raise BenchError(f"run {run}: the server {what} {count} tokens, not {expected}")
    if rate is None or rate <= 0:
        raise BenchError(f"run {run}: the server reported no {part} speed")
    return float(rate)


def memory_used(gpu: Mapping[str, Any] | None, container: Mapping[str, Any] | None,
                ) -> tuple[int | None, str | None]:
    """Bytes the model uses, and where the number comes from.

    With a GPU: the GPU memory of our container's processes (NVML, per process, on
    every GPU). Otherwise (or when NVML sees none of them): the container's memory as
    `docker stats` shows it (page cache excluded).
    """
    if gpu and gpu.get("available"):
        ours = [p.get("used_mib") for g in gpu.get("gpus") or [] for p in g.get("processes") or []
                if p.get("ours") and isinstance(p.get("used_mib"), int | float)]
        if ours:
            return int(sum(ours) * MIB), "nvml"
    used = (container or {}).get("mem_used_mib")
    if isinstance(used, int | float):
        return int(used * MIB), "container"
    return None, None
