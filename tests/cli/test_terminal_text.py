"""Control characters from containers never reach a terminal; everything else reads as written."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from llm_mcp.clients import render
from llm_mcp.clients.mcp_server import Logs, failure_text, status_summary, tool_error, tool_result
from llm_mcp.util.terminal_text import json_text, visible, visible_lines

# What a terminal acts on: C0 but tab, DEL, C1, and the bidi controls that reorder text.
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1bc\r\b\x7f\x9b31m\u202eevil\x00"


def test_escape_sequences_become_visible_ascii() -> None:
    assert visible("\x1b[2Jcleared") == "\\x1b[2Jcleared"
    assert visible("title\x1b]0;pwned\x07") == "title\\x1b]0;pwned\\x07"
    assert visible("a\rb\bc\x7fd\x9b1m") == "a\\x0db\\x08c\\x7fd\\x9b1m"
    assert visible("\u202egnp.exe") == "\\u202egnp.exe"
    assert visible("one\ntwo") == "one\\x0atwo"  # a log line stays one line


def test_tabs_and_ordinary_unicode_stay_as_they_are() -> None:
    text = "llama_model_loader:\tkv 0 · 中文 · ✓ · é"
    assert visible(text) == text


def test_several_lines_keep_their_breaks_and_lose_their_escapes() -> None:
    assert visible_lines("one\x1b[1m\ntwo\r") == "one\\x1b[1m\ntwo\\x0d"


@given(st.text())
def test_no_control_character_survives_and_escaping_twice_changes_nothing(text: str) -> None:
    once = visible(text)
    assert not CONTROL.search(once)
    assert visible(once) == once
    assert not CONTROL.search(visible_lines(text).replace("\n", ""))


def test_cli_log_lines_and_failures_are_escaped() -> None:
    assert "\x1b" not in render.log_line({"kind": "log", "text": HOSTILE})
    job = {"name": "Evil\x1b[2J", "result": "failed", "reason": "crashed", "message": "boom\x1b]0;x\x07",
           "hint": "read\x9b the log", "restored": True, "previous": "a",
           "log_lines": ["ok line", f"E error loading model: {HOSTILE}"], "detail": HOSTILE}
    text = render.outcome(job)
    assert "\\x1b]0;pwned" in text and "\\x1b[2J" in text
    # render escapes what came from a log line; the CLI's _print escapes the rest on the way out
    from llm_mcp.clients.cli import visible_lines as cli_escape

    assert not CONTROL.search(cli_escape(text).replace("\n", ""))


def test_status_text_escapes_a_hostile_reason_on_the_way_out() -> None:
    from llm_mcp.clients.cli import visible_lines as cli_escape

    text = cli_escape(render.status_text({"state": "failed", "reason": HOSTILE, "hint": HOSTILE}))
    assert not CONTROL.search(text.replace("\n", ""))


def test_mcp_error_text_and_summaries_are_escaped() -> None:
    job = {"id": "job-1", "name": "Evil", "result": "failed", "reason": "crashed", "message": HOSTILE,
           "hint": HOSTILE, "phases": [], "log_lines": [HOSTILE]}
    error = str(tool_error(failure_text(job)))
    assert "\x1b" not in error and "\\x1b]0;pwned" in error
    assert not CONTROL.search(error.replace("\n", ""))
    summary = status_summary({"state": "failed", "reason": HOSTILE, "hint": HOSTILE})
    assert not CONTROL.search(summary)


def test_mcp_structured_content_keeps_the_raw_text_and_its_text_copy_is_escaped() -> None:
    logs = Logs.model_validate({"run": "abc", "lines": [
        {"seq": 1, "time": 1.0, "run": "abc", "kind": "log", "text": HOSTILE}]})
    result = tool_result(logs)
    assert result.structured_content is not None
    assert result.structured_content["lines"][0]["text"] == HOSTILE
    text = result.content[0].text  # type: ignore[union-attr]
    assert not CONTROL.search(text.replace("\n", ""))
    assert json.loads(text)["lines"][0]["text"] == HOSTILE  # still the same JSON


@given(st.recursive(st.text() | st.integers() | st.none(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10))
def test_json_text_is_the_same_json_without_anything_a_terminal_acts_on(value: object) -> None:
    text = json_text(value)
    assert json.loads(text) == value
    assert not CONTROL.search(text.replace("\n", ""))


def test_cli_json_output_keeps_the_raw_text_and_is_plain_ascii() -> None:
    from io import StringIO

    from llm_mcp.clients.cli import _emit

    out = StringIO()
    _emit({"lines": [{"text": HOSTILE}]}, out)
    assert out.getvalue().isascii() and not CONTROL.search(out.getvalue().rstrip("\n"))
    assert json.loads(out.getvalue())["lines"][0]["text"] == HOSTILE
