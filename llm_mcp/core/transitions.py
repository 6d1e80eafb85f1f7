"""The states of one running model and the only moves between them.

The scheduler is the one writer of every model's state; it asks this table
before each change. A move the table does not allow is a bug in the core:
it is logged (and fails the tests) but never stops the daemon.
"""

from __future__ import annotations

import logging
from enum import StrEnum

log = logging.getLogger("llm_mcp.transitions")


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"
    UNREACHABLE = "unreachable"  # its engine does not answer; the container may still run


S = State
# From each state, where it may go (staying put with a new reason is always allowed).
TRANSITIONS: dict[State, frozenset[State]] = {
    S.STOPPED: frozenset({S.STARTING, S.LOADING, S.READY, S.UNREACHABLE}),  # loading/ready: adopted
    S.STARTING: frozenset({S.LOADING, S.READY, S.FAILED, S.STOPPING, S.STOPPED, S.UNREACHABLE}),
    S.LOADING: frozenset({S.READY, S.FAILED, S.STOPPING, S.STOPPED, S.UNREACHABLE}),
    S.READY: frozenset({S.STOPPING, S.FAILED, S.STOPPED, S.UNREACHABLE, S.STARTING}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED, S.UNREACHABLE, S.STARTING}),
    S.FAILED: frozenset({S.STARTING, S.STOPPING, S.STOPPED, S.UNREACHABLE, S.READY}),
    S.UNREACHABLE: frozenset({S.READY, S.LOADING, S.STOPPED, S.FAILED, S.STOPPING, S.STARTING}),
}

# Tests turn this on so that a move outside the table fails them instead of being logged.
STRICT = False


class BadTransition(AssertionError):
    pass


def allowed(old: State, new: State) -> bool:
    return old == new or new in TRANSITIONS[old]


def check(model: str, old: State, new: State) -> None:
    if allowed(old, new):
        return
    if STRICT:
        raise BadTransition(f"{model}: {old.value} -> {new.value} is not in the transition table")
    log.error("%s: unexpected state change %s -> %s (applied anyway)", model, old.value, new.value)
