"""Which log lines of a failed switch say why: they come first, before the noise around them.

A failed load's last 25 lines often open with a screen of GPU warnings and put the one
line that names the cause in the middle. Every front end (CLI, MCP, HTTP, monitor) shows
the lines that say why first, then the other recent lines, all from this one function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llm_mcp.runtime.log_signals import match_failure

# llama.cpp's own prefix: `0.00.004.555 E srv ...`; its level letter is the most reliable hint.
_LEVEL = re.compile(r"^\s*\d+\.\d+\.\d+\.\d+ ([DIWE]) ")
_ERRORISH = re.compile(r"\berror\b|\bfailed\b|\bfatal\b|GGML_ASSERT|segmentation fault|core dumped|"
                       r"\babort(ed)?\b|exiting due to|terminate called|exception", re.IGNORECASE)


def _rank(line: str) -> int:
    """0: a known cause; 1: an error line; 2: anything else (warnings included)."""
    if match_failure(line) is not None:
        return 0
    level = _LEVEL.match(line)
    if level is not None:
        return 1 if level.group(1) == "E" else 2
    return 1 if _ERRORISH.search(line) else 2


@dataclass(frozen=True, slots=True)
class FailureLines:
    why: list[str]  # the lines that say why: known causes first, then other errors, each in log order
    other: list[str]  # the most recent of the remaining lines, in log order

    def ordered(self) -> list[str]:
        return [*self.why, *self.other]


def failure_lines(lines: Sequence[str], limit: int = 25) -> FailureLines:
    """At most `limit` lines of a failure's log tail, split into why and the other recent ones."""
    if limit <= 0:
        return FailureLines([], [])
    ranked = [(_rank(line), index) for index, line in enumerate(lines)]
    why_index = sorted((rank, index) for rank, index in ranked if rank < 2)[:limit]
    chosen = {index for _, index in why_index}
    room = limit - len(why_index)
    rest = [index for index in range(len(lines)) if index not in chosen]
    other = rest[max(0, len(rest) - room):] if room else []
    return FailureLines([lines[i] for _, i in why_index], [lines[i] for i in other])


def relevant_first(lines: Sequence[str], limit: int = 25) -> list[str]:
    """The same lines as one list, for JSON answers: the lines that say why first."""
    return failure_lines(lines, limit).ordered()
