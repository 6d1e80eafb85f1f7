"""`c`: the bench results side by side, a bar per profile for each measure.

Generation and prompt speed bars are scaled to the fastest profile, load bars to
the slowest load (shorter is better). Profiles never benched are listed under the
bars with the command that measures them. Everything comes from `list_models`'
"measured" field (docs/protocol.md); an older daemon without it gets a sentence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from monitor.format import bar, clip, duration, visible
from monitor.profile_facts import Measured, Spread, bench_command, measured_of, reports_measured, size, tps
from monitor.view_state import ViewState

GEN_STYLE, PROMPT_STYLE, LOAD_STYLE = "green", "cyan", "yellow"


def _bar_cell(value: Spread | None, top: float, width: int, style: str, label: str) -> Text:
    """A bar of the median and its number; `·` when this measure is missing."""
    if value is None or top <= 0:
        return Text("·" * width + " " + "n/a".rjust(len(label)), "bright_black")
    text = bar(value.median / top, width, style)
    text.append(" " + label)
    return text


def comparison(model: ViewState, width: int) -> RenderableType:
    """The whole view for `width` cells: title, bars, the profiles never measured, keys."""
    parts: list[RenderableType] = []
    title = Text("Bench results", "bold")
    title.append(clip("  the median of each profile's runs; longer is faster, but for load", width - 13),
                 "bright_black")
    parts.append(title)
    models = model.models
    if not reports_measured(models):
        parts.append(Text("This daemon does not report bench results (an llm-mcp from before "
                          "`llm-mcp bench`). "
                          "Restart it with the current version, then measure with `llm-mcp bench ID`.",
                          "yellow"))
        parts.append(_keys())
        return Group(*parts)
    rows: list[tuple[dict[str, Any], Measured]] = []
    never: list[dict[str, Any]] = []
    for entry in models:
        result = measured_of(entry)
        if result is None:
            never.append(entry)
        else:
            rows.append((entry, result))
    rows.sort(key=lambda r: -(r[1].gen_tps.median if r[1].gen_tps else -1.0))
    if rows:
        parts.append(_table(rows, model.current_id, width))
        images = sorted({m.image for _, m in rows if m.image})
        if len(images) == 1:
            parts.append(Text(clip(f"image: {visible(images[0])}", width), "bright_black"))
        elif images:
            listed = ", ".join(visible(i) for i in images)
            parts.append(Text(clip(f"images differ: {listed}", width), "yellow"))
    else:
        parts.append(Text("No profile has been measured yet.", "bright_black"))
    if never:
        parts.append(Text("not measured:", "bold"))
        for entry in never:
            line = Text("  ")
            line.append(clip(visible(str(entry.get("name") or entry.get("id"))), max(10, width // 2 - 2)))
            line.append("  " + visible(bench_command(str(entry.get("id")))), "cyan")
            parts.append(line)
    parts.append(_keys())
    return Group(*parts)


def _keys() -> Text:
    return Text("↑↓ scroll  ·  c/Esc close  ·  q quit", "bright_black")


def _table(rows: list[tuple[dict[str, Any], Measured]], current: str | None, width: int) -> Table:
    wide = width >= 100
    name_w = max(12, min(30, max(len(str(e.get("name") or e.get("id"))) for e, _ in rows)))
    name_w = min(name_w, 30 if wide else 18)
    gen_label = [f"{tps(m.gen_tps.median)}" if m.gen_tps else "n/a" for _, m in rows]
    spread_label = [f"{tps(m.gen_tps.low)}-{tps(m.gen_tps.high)}" if m.gen_tps else "" for _, m in rows]
    prompt_label = [f"{tps(m.prompt_tps.median)}" if m.prompt_tps else "n/a" for _, m in rows]
    load_label = [duration(m.load_seconds.median) if m.load_seconds else "n/a" for _, m in rows]
    widest: Callable[[list[str]], int] = lambda labels: max(3, *(len(x) for x in labels))  # noqa: E731
    gw, pw, lw, sw = widest(gen_label), widest(prompt_label), widest(load_label), widest(spread_label)
    mem_w, runs_w = 9, 13  # "137.5 GiB", "5 runs 2026-12-01" less its word
    columns = 8 if wide else 5
    fixed = 1 + name_w + (gw + 1) + (pw + 1) + (lw + 1) + (sw + mem_w + runs_w if wide else 0)
    room = max(14, width - fixed - (columns - 1))  # one cell between columns
    gen_w = room * 45 // 100
    prompt_w = room * 30 // 100
    load_w = room - gen_w - prompt_w
    top_gen = max((m.gen_tps.median for _, m in rows if m.gen_tps), default=0.0)
    top_prompt = max((m.prompt_tps.median for _, m in rows if m.prompt_tps), default=0.0)
    top_load = max((m.load_seconds.median for _, m in rows if m.load_seconds), default=0.0)
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False,
                  header_style="bold bright_black")
    table.add_column("", no_wrap=True, width=1)
    table.add_column("profile", no_wrap=True, overflow="ellipsis", width=name_w)
    table.add_column("generation t/s", no_wrap=True)
    if wide:
        table.add_column("spread", no_wrap=True, justify="right")
    table.add_column("prompt t/s", no_wrap=True)
    table.add_column("load", no_wrap=True)
    if wide:
        table.add_column("memory", no_wrap=True, justify="right")
        table.add_column("runs", no_wrap=True, justify="right")
    for i, (entry, m) in enumerate(rows):
        marker = Text("●", "green") if entry.get("id") == current else Text("")
        name = Text(visible(str(entry.get("name") or entry.get("id"))), "bold" if marker.plain else "")
        cells: list[Text | str] = [marker, name,
                                   _bar_cell(m.gen_tps, top_gen, gen_w, GEN_STYLE, gen_label[i].rjust(gw))]
        if wide:
            cells.append(Text(spread_label[i], "bright_black"))
        cells += [_bar_cell(m.prompt_tps, top_prompt, prompt_w, PROMPT_STYLE, prompt_label[i].rjust(pw)),
                  _bar_cell(m.load_seconds, top_load, load_w, LOAD_STYLE, load_label[i].rjust(lw))]
        if wide:
            cells.append(size(m.memory_bytes) if m.memory_bytes is not None else "n/a")
            when = time.strftime("%Y-%m-%d", time.gmtime(m.date)) if m.date is not None else ""
            cells.append(Text(f"{m.runs or '?'}x {when}".strip(), "bright_black"))
        table.add_row(*cells)
    return table


class CompareScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > VerticalScroll {
        width: 96%; max-width: 140; height: auto; max-height: 100%;
        padding: 0 1; border: thick $accent; background: $surface;
    }
    """

    BINDINGS = [
        Binding("escape,c", "dismiss(None)", "close"),
        Binding("q", "app.quit", "quit"),  # q quits everywhere, as every pop-up says
    ]

    def __init__(self, model: ViewState) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="compare"):
            yield Static(id="compare-body")

    def on_mount(self) -> None:
        self.refresh_view()

    def on_resize(self) -> None:
        self.refresh_view()

    def _width(self) -> int:
        """Cells inside the box (96 % of the terminal, at most 140, less border, padding, scrollbar)."""
        return min(140, self.app.size.width * 96 // 100) - 6

    def refresh_view(self) -> None:
        if self.is_mounted:
            self.query_one("#compare-body", Static).update(comparison(self.model, self._width()))
