"""Fixtures of the log tests: real daemons (as a process and as MCP's), and their profiles."""

from __future__ import annotations

from tests.conftest import FAKE_IMAGE
from tests.daemon.conftest import daemons
from tests.mcp.conftest import daemon, mcp_setup

__all__ = ["CATASTROPHIC", "daemon", "daemons", "extra", "mcp_setup"]

# Backtracks catastrophically in Python's `re` and in `regex` on lines without b or c.
CATASTROPHIC = r"(.*){1,100}[bc]"


def extra(profile_id: str, flags: str, more: str = "") -> str:
    """One more fake profile for models.conf."""
    return (f"\n[{profile_id}]\nname = {profile_id.title()}\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
            f"flags = {flags}\n{more}")
