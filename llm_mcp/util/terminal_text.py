"""Text from containers, Docker and the daemon made harmless to print on a terminal.

A log line can carry escape sequences (a model file's bytes, a hostile image): printed raw
they retitle, clear or reprogram the user's terminal. Every human-facing output escapes
control characters as visible ASCII (`\\x1b`), not as control pictures (`␛`): it works in any
font, locale and pipe, says exactly which byte it was (C1 controls have no pictures), and
reads like Python's own escapes. Tab stays a tab. Machine output (`--json`, MCP structured
content) keeps the raw text; JSON encodes it.
"""

from __future__ import annotations

import json
import re

# C0 but tab, DEL, C1 (U+0080-U+009F: U+009B is a one-character CSI), and the bidi controls
# that reorder what the eye sees (U+202A-U+202E, U+2066-U+2069).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """One line of untrusted text with every control character (newlines too) escaped."""
    return _CONTROL.sub(_escaped, text)


def visible_lines(text: str) -> str:
    """Text of several lines: the line breaks stay, everything else is escaped per line."""
    return "\n".join(visible(line) for line in text.split("\n"))


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # json.dumps escapes C0 itself


def json_text(value: object, indent: int | None = 2) -> str:
    """JSON that decodes to the raw strings, with nothing in it a terminal acts on.

    Non-ASCII text stays readable (unlike ensure_ascii); only DEL, C1 and bidi controls
    become \\u escapes, which JSON decodes back to the same characters.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
