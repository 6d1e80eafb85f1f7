"""The Docker adapter's one translation point: whatever its SDK stack throws becomes ours.

A stand-in SDK call (named as such) raises what the real stack was seen raising; a
raw exception escaping the adapter would end the core's task group, and the daemon.
"""

from __future__ import annotations

import pytest

from llm_mcp.runtime.base import ContainerGone, EngineUnavailable, RuntimeFailure
from llm_mcp.runtime.docker_engine import _translated


def test_an_unexpected_error_inside_an_sdk_call_becomes_a_runtime_failure() -> None:
    # Seen in a test run: requests iterating os.environ while another thread changed it.
    with pytest.raises(RuntimeFailure, match="wait: KeyError"), _translated("wait", None):
        raise KeyError("PYTHONDONTWRITEBYTECODE")


def test_a_vanished_socket_is_an_unavailable_engine_not_a_failure() -> None:
    with pytest.raises(EngineUnavailable), _translated("inspect", "unix:///nowhere.sock"):
        raise FileNotFoundError(2, "No such file or directory")


def test_our_own_errors_pass_through_unchanged() -> None:
    with pytest.raises(ContainerGone, match="gone"), _translated("inspect", None):
        raise ContainerGone("gone")
