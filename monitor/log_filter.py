"""The log panel's filter: the user's regex, bounded in time.

The filter runs on the monitor's only thread, over up to 5,000 lines at every key
typed into the filter field; a pattern that backtracks catastrophically, such as
`(.*.*)*Z`, would freeze the monitor for good. So every match has a timeout (the
`regex` package's), and a pattern that runs past it is matched as plain text from
then on, saying so. Text that is not a valid regex is matched as plain text too.
"""

from __future__ import annotations

import regex

LINE_TIMEOUT_S = 0.02  # one line; a sane pattern takes microseconds
_FLAGS = regex.IGNORECASE | regex.VERSION0


class LogFilter:
    """A case-insensitive search that gives up on a too-slow regex for the literal text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.literal = False
        self.too_slow = False
        try:
            self._pattern = regex.compile(text, _FLAGS)
        except (regex.error, OverflowError, RecursionError, ValueError):
            self._as_text()

    def _as_text(self) -> None:
        self._pattern = regex.compile(regex.escape(self.text), _FLAGS)
        self.literal = True

    def _gave_up(self) -> None:
        self.too_slow = True
        self._as_text()

    def search(self, text: str) -> bool:
        try:
            return self._pattern.search(text, timeout=LINE_TIMEOUT_S) is not None
        except TimeoutError:
            self._gave_up()
            return self._pattern.search(text) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where it matches (non-empty matches only), for highlighting."""
        try:
            found = list(self._pattern.finditer(text, timeout=LINE_TIMEOUT_S))
        except TimeoutError:
            self._gave_up()
            found = list(self._pattern.finditer(text))
        return [m.span() for m in found if m.end() > m.start()]


def compile_filter(text: str) -> LogFilter | None:
    """The filter for `text`; None for no filter."""
    return LogFilter(text) if text else None
