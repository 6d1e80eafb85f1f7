"""The log panel: bounded, following by default, filterable, wrappable.

Only the visible rows are rendered (a ScrollView with `render_line`), so a
burst of thousands of lines costs one layout of the new lines and one frame.
Scrolling up pauses the follow and counts the lines that arrive meanwhile;
End, `f`, `G` or scrolling back to the bottom resumes it.

With several models the view shows all of them (each line tagged with its
model, dimmed) or one (`source`); lines that name no model show under "all" only.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from monitor.format import clip, visible
from monitor.log_filter import LogFilter, compile_filter

_LEVEL = re.compile(r"^\d+\.\d{2}\.\d{3}\.\d{3} ([EW]) ")
_LEVEL_STYLE = {"E": Style(color="red"), "W": Style(color="yellow")}
_KIND_STYLE = {"separator": Style(color="cyan", bold=True), "note": Style(color="magenta", italic=True)}
_MATCH_STYLE = Style(color="black", bgcolor="yellow", bold=True)
_CURRENT_STYLE = Style(bgcolor="#3a3a6a")
_TAG_STYLE = Style(dim=True)
TAG_MAX = 12  # cells of a model tag; longer ids are cut with an ellipsis


@dataclass(slots=True, frozen=True)
class LogEntry:
    n: int  # order in this view
    seq: int  # the daemon's sequence number (0 for the monitor's own notes)
    time: float
    kind: str  # "log" | "separator" | "note"
    text: str
    model: str | None = None  # the profile id of the container that printed it; None: daemon-wide


class LogView(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("end", "follow", "follow", show=False),
        Binding("home", "top", "top", show=False),
    ]

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $text;
        overflow: scroll;
    }
    """

    def __init__(self, max_lines: int = 5000, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.follow = True
        self.unseen = 0
        self.wrap = False
        self.timestamps = False
        self.pattern: LogFilter | None = None
        self.filter_text = ""
        self.placeholder = "no log lines yet · m picks a model to start"
        self._entries: list[LogEntry] = []
        self._rows: list[tuple[LogEntry, int]] = []  # (entry, first character of the row)
        self._current: tuple[int, int] | None = None  # the row n/N landed on
        self._counter = 0
        self._width = 0
        self._layout_width = 0
        self._programmatic = False
        self._cache: LRUCache[tuple[int, int, bool], Strip] = LRUCache(1024)
        self._base_style: Style | None = None
        self.source: str | None = None  # the model whose lines show; None: all
        self.models: dict[str, None] = {}  # models seen in the log, in order
        self._tag_width = 0

    # ---- content -----------------------------------------------------------------

    @property
    def entries(self) -> list[LogEntry]:
        return self._entries

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def visible_texts(self) -> list[str]:
        """The text of every row the current filter lets through (one per entry)."""
        return [entry.text for entry, start in self._rows if start == 0]

    def add(self, lines: Iterable[tuple[int, float, str, str, str | None]]) -> None:
        """Append (seq, time, kind, text, model) lines in one layout pass."""
        batch = list(lines)
        for line in batch:
            if line[4] is not None and line[4] not in self.models:
                self.models[line[4]] = None
        if self._tag_width != self._wanted_tag_width():  # a second model: every line gets its tag
            self._tag_width = self._wanted_tag_width()
            self._add_entries(batch)
            self._prune()
            self._relayout()
            return
        new_rows: list[tuple[LogEntry, int]] = []
        matched = added = 0
        for entry in self._add_entries(batch):
            added += 1
            rows = self._layout_entry(entry)
            if rows:
                matched += 1
                new_rows.extend(rows)
                if not self.wrap:
                    self._width = max(self._width, cell_len(self._display(entry)))
        if not added:
            return
        self._rows.extend(new_rows)
        pruned = self._prune()
        self._set_virtual_size(Size(self._width, len(self._rows)))
        if self.follow:
            self._to_bottom()
        else:
            self.unseen += matched
            if pruned:
                self._jump_to(self.scroll_y - pruned)
        self.refresh()
        self._update_subtitle()

    def _add_entries(self, lines: list[tuple[int, float, str, str, str | None]]) -> list[LogEntry]:
        added = []
        for seq, when, kind, text, model in lines:
            self._counter += 1
            entry = LogEntry(self._counter, seq, when, kind, visible(text.expandtabs()), model)
            self._entries.append(entry)
            added.append(entry)
        return added

    def _wanted_tag_width(self) -> int:
        """No tags while one model (or none) has printed: they would say nothing."""
        if len(self.models) < 2:
            return 0
        return min(TAG_MAX, max(cell_len(visible(m)) for m in self.models))

    def _set_virtual_size(self, size: Size) -> None:
        """Grow the scrollable area without a layout pass of the whole screen.

        Assigning `virtual_size` re-lays out every widget; the log only needs its
        scrollbars updated (a scrollbar that appears still triggers a layout).
        """
        if size == self.virtual_size:
            return
        if not self.is_mounted or not self.container_size:
            self.virtual_size = size
            return
        self.set_reactive(Widget.virtual_size, size)
        self._scroll_update(size)

    def note(self, text: str, kind: str = "note") -> None:
        self.add([(0, time.time(), kind, text, None)])

    def clear(self) -> None:
        self._entries.clear()
        self.models.clear()
        self._tag_width = 0
        self._rows.clear()
        self._current = None
        self._width = 0
        self.unseen = 0
        self._cache.clear()
        self.virtual_size = Size(0, 0)
        self._jump_to(0)
        self.refresh()
        self._update_subtitle()

    def _prune(self) -> int:
        excess = len(self._entries) - self.max_lines
        if excess <= 0:
            return 0
        first_kept = self._entries[excess].n
        del self._entries[:excess]
        cut = bisect_left(self._rows, first_kept, key=lambda row: row[0].n)
        del self._rows[:cut]
        return cut

    # ---- layout ------------------------------------------------------------------

    def _stamp(self, entry: LogEntry) -> str:
        if self.timestamps and entry.time:
            return time.strftime("%H:%M:%S ", time.localtime(entry.time))
        return ""

    def _tag(self, entry: LogEntry) -> str:
        width = self._tag_width
        if not width or self.source is not None:
            return ""
        tag = clip(visible(entry.model or ""), width)
        return tag + " " * (width - cell_len(tag) + 1)

    def _display(self, entry: LogEntry) -> str:
        return f"{self._stamp(entry)}{self._tag(entry)}{entry.text}"

    def _shown(self, entry: LogEntry) -> bool:
        if self.source is not None and entry.model != self.source:
            return False
        return self.pattern is None or entry.kind == "separator" or bool(self.pattern.search(entry.text))

    def _wrap_width(self) -> int:
        width = self.scrollable_content_region.width
        return width if width > 0 else 80

    def _layout_entry(self, entry: LogEntry) -> list[tuple[LogEntry, int]]:
        if not self._shown(entry):
            return []
        if not self.wrap:
            return [(entry, 0)]
        width = self._layout_width or self._wrap_width()
        length = len(self._display(entry))
        return [(entry, start) for start in range(0, max(length, 1), width)]

    def _relayout(self) -> None:
        self._cache.clear()
        self._layout_width = self._wrap_width() if self.wrap else 0
        self._rows = [row for entry in self._entries for row in self._layout_entry(entry)]
        self._width = 0 if self.wrap else max((cell_len(self._display(e)) for e, _ in self._rows), default=0)
        self.virtual_size = Size(self._width, len(self._rows))
        if self.follow:
            self._to_bottom()
        else:
            self._jump_to(min(self.scroll_y, self.max_scroll_y))
        self.refresh()
        self._update_subtitle()

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap and self._wrap_width() != self._layout_width:
            self._relayout()
        elif self.follow:
            self._to_bottom()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._cache.clear()

    # ---- view options ------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.pattern = compile_filter(text)
        self._current = None
        self._relayout()
        if self.pattern is not None and self.pattern.too_slow:
            self._relayout()  # the lines before it gave up were matched as a regex: all as text now

    def set_source(self, model: str | None) -> None:
        """Show only `model`'s lines; None: every model's, tagged."""
        self.source = model
        self._current = None
        self._relayout()

    def toggle_wrap(self) -> None:
        self.wrap = not self.wrap
        self._relayout()

    def toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._relayout()

    # ---- scrolling and following ---------------------------------------------------

    def _jump_to(self, y: float) -> None:
        self._programmatic = True
        try:
            self.scroll_to(y=max(0.0, y), animate=False, immediate=True)
        finally:
            self._programmatic = False

    def _to_bottom(self) -> None:
        """Show the newest line without a screen-wide scroll update.

        A normal scroll makes Textual reflow and repaint every widget on the
        screen; following a busy log does that many times a second. Moving the
        offset quietly repaints only this widget and its scrollbar.
        """
        y = self.max_scroll_y
        if not self.is_mounted or not self.container_size:
            self._jump_to(y)
            return
        if y != self.scroll_y or y != self.scroll_target_y:
            self.set_reactive(Widget.scroll_y, y)
            self.set_reactive(Widget.scroll_target_y, y)
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.position = y
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._programmatic:
            return
        at_bottom = round(new_value) >= self.max_scroll_y
        if at_bottom and new_value > old_value and not self.follow:
            self.resume()
        elif not at_bottom and new_value < old_value and self.follow:
            self.pause()

    def pause(self) -> None:
        if self.follow:
            self.follow = False
            self.unseen = 0
            self._update_subtitle()

    def resume(self) -> None:
        self.follow = True
        self.unseen = 0
        self._current = None
        self.refresh()
        self._to_bottom()
        self._update_subtitle()

    def action_follow(self) -> None:
        self.resume()

    def action_top(self) -> None:
        self.pause()
        self._jump_to(0)

    def action_bottom(self) -> None:
        self.resume()

    def jump(self, forward: bool) -> bool:
        """Move to the next (or previous) matching line; False when there is none."""
        if self.pattern is None:
            return False
        candidates = [i for i, (entry, start) in enumerate(self._rows)
                      if start == 0 and entry.kind != "separator"]
        if not candidates:
            return False
        if self._current is not None:
            here = bisect_left(self._rows, self._current, key=lambda row: (row[0].n, row[1]))
        elif forward:
            here = int(self.scroll_y) - 1
        else:
            here = int(self.scroll_y) + self.scrollable_content_region.height
        if forward:
            target = next((i for i in candidates if i > here), None)
        else:
            target = next((i for i in reversed(candidates) if i < here), None)
        if target is None:
            return False
        entry, start = self._rows[target]
        self._current = (entry.n, start)
        self.pause()
        height = self.scrollable_content_region.height
        if not self.scroll_y <= target < self.scroll_y + height:
            self._jump_to(target - height // 2)
        self.refresh()
        return True

    # ---- rendering -----------------------------------------------------------------

    def _update_subtitle(self) -> None:
        parts = []
        if self.pattern is not None:
            shown = sum(1 for e, s in self._rows if s == 0 and e.kind != "separator")
            how = " (too slow as a regex: plain text)" if self.pattern.too_slow else ""
            parts.append(f"filter /{_escape(self.filter_text)}/{how} {shown} lines · n/N jump")
        if self.wrap:
            parts.append("wrap")
        if self.follow:
            parts.append("following")
        elif self.unseen:
            parts.append(f"[b reverse] +{self.unseen} new lines [/] End/f follow")
        else:
            parts.append("paused · End/f follow")
        self.border_subtitle = " · ".join(parts)
        self.border_title = self.title()

    def title(self) -> str:
        """`log`; with several models `log · all` or `log · MODEL`."""
        if self.source is not None:
            return f"log · {_escape(visible(self.source))}"
        return "log · all" if len(self.models) > 1 else "log"

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self._base_style
        if base is None:  # computing it walks the ancestors: once per style change, not per line
            base = self._base_style = self.rich_style
        if index >= len(self._rows):
            if index == 0 and self.placeholder:
                message = f"no line matches /{self.filter_text}/" if self._entries else self.placeholder
                hint = Text(message, style=base + Style(dim=True, italic=True), end="")
                return Strip(list(hint.render(self.app.console)), hint.cell_len).crop_extend(0, width, base)
            return Strip.blank(width, base)
        entry, start = self._rows[index]
        current = self._current == (entry.n, start)
        key = (entry.n, start, current)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_row(entry, start, current, base)
            self._cache[key] = strip
        return strip.crop_extend(0 if self.wrap else scroll_x, (0 if self.wrap else scroll_x) + width, base)

    def _render_row(self, entry: LogEntry, start: int, current: bool, base: Style) -> Strip:
        display = self._display(entry)
        chunk = display[start:start + self._layout_width] if self.wrap else display
        text = Text(chunk, no_wrap=True, end="")
        text.stylize(base)
        if entry.kind in _KIND_STYLE:
            text.stylize(_KIND_STYLE[entry.kind])
        elif level := _LEVEL.match(entry.text):
            text.stylize(_LEVEL_STYLE[level.group(1)])
        tag = self._tag(entry)
        if tag:  # where the tag lies in this row (a wrapped line's later rows have none)
            begin = len(self._stamp(entry)) - start
            if begin + len(tag) > 0:
                text.stylize(_TAG_STYLE, max(0, begin), begin + len(tag))
        if current:
            text.stylize(_CURRENT_STYLE)
        if self.pattern is not None and entry.kind != "separator":
            for begin, end in self.pattern.spans(chunk):
                text.stylize(_MATCH_STYLE, begin, end)
        return Strip(list(text.render(self.app.console)), text.cell_len)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
