"""`m`: the model picker. Digits pick, `b` shows the bench profiles, Esc cancels.

The dashboard keeps updating underneath; the app calls `refresh_view` when the
daemon's state changes, so the current marker and the in-flight banner stay true.
Whether a pick has to replace a switch in flight is the daemon's call, not the
picker's: a pick is always sent as is, and a `busy` answer (with the job that
really runs) makes the app ask before it repeats the pick with force.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Static

from monitor.format import clip, duration, placement, visible
from monitor.levels import STATE_STYLE
from monitor.profile_facts import (
    FIT_MARK,
    FIT_WORD,
    Measured,
    fit_of,
    fit_sentence,
    fit_style,
    measured_of,
    reports_fit,
    reports_measured,
    tps,
)
from monitor.view_state import ViewState
from monitor.widgets.status_bar import STATE_ICON
from monitor.widgets.switch_panel import phase_label


def reports_placement(models: list[dict[str, Any]]) -> bool:
    """A daemon that runs several models says where each would run and what it would replace."""
    return any("would_replace" in m for m in models)


def effect_text(row: dict[str, Any], running: list[str], *, short: bool = False) -> Text:
    """What picking `row` does to the running models: `replaces coder`, `runs beside coder`.

    `short` (a narrow picker's column): `replaces coder` or `replaces 2`, `beside`.
    """
    if isinstance(row.get("running"), str) or row.get("id") in running:
        return Text("running", "green")
    replaced = [str(r) for r in row.get("would_replace") or []]
    beside = [r for r in running if r not in replaced and r != row.get("id")]
    text = Text()
    if short:
        if replaced:
            text.append(f"replaces {visible(replaced[0]) if len(replaced) == 1 else len(replaced)}", "yellow")
        elif beside:
            text.append("beside", "cyan")
        return text
    if replaced:
        text.append("replaces " + ", ".join(visible(r) for r in replaced), "yellow")
    if beside:
        text.append("; " if replaced else "")
        names = ", ".join(visible(r) for r in beside)
        text.append(("keeps " if replaced else "runs beside ") + names, "cyan")
    return text


def _cells_len(cell: Text | str) -> int:
    return cell_len(cell.plain if isinstance(cell, Text) else cell)


DIGIT_WAIT = 0.8  # seconds to wait for a second digit when there are ten profiles or more


@dataclass(frozen=True, slots=True)
class Pick:
    profile: str
    force: bool = False


class PickerScreen(ModalScreen[Pick | None]):
    DEFAULT_CSS = """
    PickerScreen { align: center middle; }
    PickerScreen > Vertical {
        width: 90%; max-width: 110; height: auto; max-height: 90%;
        padding: 0 1; border: thick $accent; background: $surface;
    }
    """

    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("b", "toggle_bench", "bench profiles"),
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("enter", "choose", "pick", show=False),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, model: ViewState, *, readonly: bool = False) -> None:
        super().__init__()
        self.model = model
        self.readonly = readonly
        self.bench = False
        self.cursor = 0
        self._moved = False  # once the user moves the cursor, a refreshed list keeps it where it is
        self.message = ""
        self._digits = ""
        self._digit_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static(self._body(), id="picker-body")

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.model.profiles(self.bench)

    def on_mount(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        if not self._moved:
            self.cursor = self._preselected()
        if self.is_mounted:
            self.query_one("#picker-body", Static).update(self._body())

    def _preselected(self) -> int:
        """The running (or loading) model's row; with nothing running, models.conf's `default`."""
        job = self.model.job
        loading = job.get("profile") if job and job.get("kind") == "switch" else None
        wanted = loading or self.model.current_id or (self.model.profile or {}).get("id")
        if wanted is None and self.model.state in ("stopped", "failed", "unknown"):
            wanted = self.model.default_id
        ids = [row.get("id") for row in self.rows]
        return ids.index(wanted) if wanted in ids else 0

    # ---- keys --------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        if event.character is None or not event.character.isdigit():
            return
        event.stop()
        event.prevent_default()
        self._digit(event.character)

    def _digit(self, char: str) -> None:
        count = len(self.rows)
        if self._digit_timer is not None:
            self._digit_timer.stop()
            self._digit_timer = None
        self._digits += char
        typed = int(self._digits)
        longer = [n for n in range(1, count + 1) if str(n).startswith(self._digits) and n != typed]
        if not longer:
            self._digits = ""
            if 1 <= typed <= count:
                self._choose(typed - 1)
            else:
                self._say(f"no profile numbered {typed}")
            return
        self._digit_timer = self.set_timer(DIGIT_WAIT, self._digits_done)

    def _digits_done(self) -> None:
        typed, self._digits = int(self._digits or 0), ""
        self._digit_timer = None
        if 1 <= typed <= len(self.rows):
            self._choose(typed - 1)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_toggle_bench(self) -> None:
        self.bench = not self.bench
        self._moved = False
        self.message = ""
        self.refresh_view()

    def action_move(self, step: int) -> None:
        if self.rows:
            self._moved = True
            self.cursor = (self.cursor + step) % len(self.rows)
            self.refresh_view()

    def action_choose(self) -> None:
        if self.rows:
            self._choose(self.cursor)

    def _say(self, message: str) -> None:
        self.message = message
        self.app.bell()
        self.refresh_view()

    def _choose(self, index: int) -> None:
        rows = self.rows
        if not 0 <= index < len(rows):
            return
        self.cursor = index
        self._moved = True
        row = rows[index]
        if self.readonly:
            self._say("read-only monitor: switching is disabled (start llm-monitor without --readonly)")
            return
        if not self.model.connected:
            self._say("not connected to the daemon; try again once it answers")
            return
        self.dismiss(Pick(str(row["id"])))

    # ---- drawing -----------------------------------------------------------------

    def _body(self) -> RenderableType:
        parts: list[RenderableType] = []
        title = Text("Bench profiles" if self.bench else "Switch model", "bold")
        title.append("   b: " + ("production profiles" if self.bench else "bench profiles"), "bright_black")
        parts.append(title)
        job = self.model.job
        if job is not None:
            parts.append(self._in_flight(job))
        if self.readonly:
            parts.append(Text("read-only monitor: this list is for reading", "reverse"))
        rows = self.rows
        if not rows:
            parts.append(Text("no bench profiles in models.conf (bench = true puts one here)" if self.bench
                              else "no profiles in models.conf yet", "bright_black"))
        else:
            parts.append(self._table(rows))
            parts.extend(self._details(rows[self.cursor] if 0 <= self.cursor < len(rows) else None))
        if self.message:
            parts.append(Text(self.message, "yellow"))
        count = len(rows)
        keys = Text(f"1-{count} pick" if count > 1 else ("1 pick" if count else ""), "bright_black")
        keys.append("  ·  ↑↓ Enter  ·  b bench  ·  Esc cancel  ·  q quit", "bright_black")
        parts.append(keys)
        return Group(*parts)

    def _in_flight(self, job: dict[str, Any]) -> Text:
        text = Text()
        if job.get("kind") == "switch":
            text.append(f"⟳ a switch to {job.get('name') or job.get('profile')} is in flight", "bold yellow")
        elif job.get("kind") == "bench":
            now = job.get("name") or job.get("profile")
            text.append(f"⟳ a bench ({now} now) is in flight", "bold yellow")
        else:
            text.append(f"⟳ a {job.get('kind')} job is in flight", "bold yellow")
        text.append(f" ({phase_label(job.get('phase'))}, {duration(self.model.job_elapsed())});"
                    " picking another model asks before replacing it", "yellow")
        return text

    def _width(self) -> int:
        """Cells inside the picker's box (90 % of the terminal, at most 110, less border and padding)."""
        return min(110, self.app.size.width * 9 // 10) - 4

    def _wide(self) -> bool:
        return self._width() >= 90

    def _table(self, rows: list[dict[str, Any]]) -> Table:
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold bright_black")
        with_fit = reports_fit(self.model.models)
        with_measured = reports_measured(self.model.models)
        wide = self._wide()
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        placed = reports_placement(self.model.models)
        # The file column gives way first; with placement, a long name gives way to where and on pick.
        table.add_column("name", overflow="ellipsis", no_wrap=True, max_width=32 if placed else None)
        if with_fit:
            table.add_column("fit", no_wrap=True, min_width=6 if wide else 3)  # the name gives way first
        if with_measured:
            table.add_column("measured", justify="right", no_wrap=True, min_width=9)
        table.add_column("expected" if with_measured else "speed", justify="right", no_wrap=True,
                         min_width=8 if with_measured else 5)
        table.add_column("context", justify="right", no_wrap=True, min_width=7)
        if placed:  # narrow: where it runs is in the line under the list
            if wide:
                table.add_column("where", no_wrap=True, overflow="ellipsis", min_width=10)
            table.add_column("on pick", overflow="ellipsis", no_wrap=True, min_width=12 if wide else 7)
        # narrow, or placement to show: the line under the list names the file
        elif wide or not (with_fit or with_measured):
            table.add_column("model file", overflow="ellipsis")
        current = self.model.current_id
        default = self.model.default_id
        job = self.model.job
        loading = job.get("profile") if job and job.get("kind") == "switch" else None
        lines: list[tuple[list[Text | str], str]] = []
        for i, row in enumerate(rows):
            marker = Text("")
            running = row.get("running")
            if row.get("id") == loading:
                marker = Text("⟳", "yellow")
            elif row.get("id") == current or running == "ready":
                marker = Text("●", "green")
            elif isinstance(running, str):
                marker = Text(STATE_ICON.get(running, "?"), STATE_STYLE.get(running, "bold"))
            speed = row.get("speed")
            ctx = row.get("ctx_size")
            model_file = Text(str(row.get("model") or ""))
            if row.get("model_present") is False:
                model_file.append(" (missing)", "red")
            name = Text(str(row.get("name") or row.get("id")), "bold" if row.get("id") == current else "")
            if placed and isinstance(running, str) and running != "ready":  # ● says ready
                name.append(f" ({running})", STATE_STYLE.get(running, ""))
            elif row.get("id") == current and not placed:
                name.append(" (current)", "green")
            elif row.get("id") == default:
                name.append(" (default)", "bright_black")
            style = "reverse" if i == self.cursor else ""
            cells: list[Text | str] = [Text(str(i + 1), "bold cyan"), marker, name]
            if with_fit:
                cells.append(self._fit_cell(row, wide))
            if with_measured:
                cells.append(self._measured_cell(row))
            cells += ["n/a" if speed is None else f"{speed:g} t/s", "n/a" if ctx is None else str(ctx)]
            if placed:
                if wide:
                    cells.append(Text(visible(placement(row.get("engine"), row.get("gpus"),
                                                        row.get("exclusive"))), "bright_black"))
                cells.append(effect_text(row, self.model.serving_ids(), short=not wide))
            elif len(table.columns) > len(cells):
                cells.append(model_file)
            lines.append((cells, style))
        if placed:  # the effect column gives way (the line under the list has it in full)
            fixed = sum(max([cell_len(str(column.header)), *(_cells_len(cells[c]) for cells, _ in lines)]) + 2
                        for c, column in enumerate(table.columns[:-1]))
            table.columns[-1].max_width = max(8, self._width() - fixed - 2)
        for cells, style in lines:
            table.add_row(*cells, style=style)
        return table

    @staticmethod
    def _fit_cell(row: dict[str, Any], wide: bool) -> Text:
        fit = fit_of(row)
        if fit is None:
            return Text("")
        label = f"{FIT_MARK[fit.verdict]} {FIT_WORD[fit.verdict]}" if wide else FIT_MARK[fit.verdict]
        return Text(label, fit_style(fit.verdict))

    @staticmethod
    def _measured_cell(row: dict[str, Any]) -> Text:
        measured = measured_of(row)
        if measured is None or measured.gen_tps is None:
            return Text("-", "bright_black")
        gen = measured.gen_tps.median
        expected = row.get("speed")
        slow = isinstance(expected, int | float) and expected > 0 and gen < 0.8 * expected
        return Text(f"{tps(gen)} t/s", "yellow" if slow else "green")

    def _details(self, row: dict[str, Any] | None) -> list[Text]:
        """The highlighted profile: its fit in one line (the daemon's own), its bench numbers."""
        if row is None:
            return []
        lines: list[Text] = []
        width = max(20, self._width())
        fit = fit_of(row)
        if fit is not None:  # wrapped, not cut: the numbers are the point
            sentence = visible(fit_sentence(fit))
            lines.append(Text(f"{FIT_MARK[fit.verdict]} {sentence}", fit_style(fit.verdict)))
        measured = measured_of(row)
        if reports_measured(self.model.models):
            if measured is None:
                lines.append(Text(f"not measured: llm-mcp bench {visible(str(row.get('id')))}",
                                  "bright_black"))
            else:
                lines.append(Text(clip(self._measured_line(measured), width), "bright_black"))
        placed = reports_placement(self.model.models)
        if placed:  # before the pick: where it would run and what it would stop
            where = visible(placement(row.get("engine"), row.get("gpus"), row.get("exclusive")))
            line = Text(f"runs on {where}", "bright_black")
            effect = effect_text(row, self.model.serving_ids())
            if effect.plain:
                line.append(" · ", "bright_black")
                line.append_text(effect)
            lines.append(line)  # wrapped, not cut: what it stops is the point
        facts = fit is not None or reports_measured(self.model.models) or placed
        if (not self._wide() or placed) and facts:
            model_file = f"model file: {visible(str(row.get('model') or ''))}"
            if row.get("model_present") is False:
                model_file += " (missing)"
            lines.append(Text(clip(model_file, width), "bright_black"))
        return lines

    @staticmethod
    def _measured_line(measured: Measured) -> str:
        parts = []
        if measured.gen_tps is not None:
            g = measured.gen_tps
            parts.append(f"{tps(g.median)} t/s ({tps(g.low)}-{tps(g.high)})")
        if measured.prompt_tps is not None:
            parts.append(f"prompt {tps(measured.prompt_tps.median)} t/s")
        if measured.load_seconds is not None:
            parts.append(f"load {duration(measured.load_seconds.median)}")
        when = ""
        if measured.date is not None:
            when = time.strftime(" %Y-%m-%d", time.gmtime(measured.date))
        runs = f"{measured.runs} runs" if measured.runs else ""
        when = ", ".join(part for part in (runs, when.strip()) if part)
        return "measured " + " · ".join(parts) + (f" · {when}" if when else "")
