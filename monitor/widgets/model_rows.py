"""A row per running model, under the header, when more than one runs.

With one model the header is its row (as before several models could run), so the
table only takes room when two models or more have a container (it then lists the
recent failures too). Narrow terminals
cut the ids and drop the health column (a health that is not ok still shows, in
the state cell); from WIDE columns on, every column shows.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from llm_mcp.wire import RunningModel, SpeedInfo
from monitor.format import clip, duration, placement, requests_badge, visible
from monitor.levels import STATE_STYLE
from monitor.view_state import ViewState
from monitor.widgets.status_bar import STATE_ICON

WIDE = 100  # columns from which the health column and whole ids show
NARROW_ID = 18  # cells for an id below WIDE
WIDE_ID = 32
PRIMARY_MARK = "★"
MAX_ROWS = 8  # models listed; the rest are counted (the log keeps its room)
MAX_ROWS_SHORT = 4  # on a terminal under SHORT rows
SHORT = 30


def serving_cell(model: ViewState, row: RunningModel) -> Text:
    """The endpoint's requests for it (`⇅2 +1q`) while there are any, else its idle-unload countdown."""
    r = row.requests
    badge = requests_badge(r.in_flight, r.queued) if r is not None else ""
    if badge:
        return Text(badge, "cyan")
    left = model.ttl_left(row)
    if left is not None:
        return Text(f"ttl {duration(left)}", "yellow" if left < 60 else "bright_black")
    return Text("")


def speed_cell(speed: SpeedInfo | None) -> Text:
    if speed is None or speed.measured_tps is None:
        return Text("-", "bright_black")
    ratio = speed.ratio
    style = "green" if ratio is None or ratio >= 0.8 else "yellow"
    return Text(f"{speed.measured_tps:.1f} t/s", style)


class ModelRows(Widget):
    DEFAULT_CSS = """
    ModelRows { height: auto; padding: 0 1; display: none; }
    """

    def __init__(self, model: ViewState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    @property
    def has_content(self) -> bool:
        """Two models with a container at least; a failed one beside a single model is the failure
        panel's news, and one-at-a-time setups keep their layout."""
        return len(self.model.serving_ids()) > 1

    def render(self) -> Table:
        wide = self.size.width >= WIDE or self.size.width == 0
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold bright_black",
                      expand=False, pad_edge=False)
        table.add_column("", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("where", no_wrap=True)
        table.add_column("speed", justify="right", no_wrap=True)
        if wide:
            table.add_column("health", no_wrap=True)
        table.add_column("uptime", justify="right", no_wrap=True)
        primary = self.model.primary_id
        rows = self.model.running
        serving = any(serving_cell(self.model, row).plain for row in rows)
        if serving:  # only once the endpoint has requests or a model counts down to its unload
            table.add_column("load", no_wrap=True)
        if wide:
            table.add_column("", overflow="ellipsis", no_wrap=True)
        limit = MAX_ROWS_SHORT if self.is_attached and 0 < self.app.size.height < SHORT else MAX_ROWS
        if len(rows) > limit:  # the primary always shows
            shown = rows[:limit - 1]
            if primary is not None and all(r.id != primary for r in shown):
                shown = [*shown[:-1], *(r for r in rows if r.id == primary)]
            rows, more = shown, len(rows) - len(shown)
        else:
            more = 0
        for row in rows:
            table.add_row(*self._cells(row, row.id == primary, wide, serving))
        if more:
            note = "bright_black"
            table.add_row(Text(""), Text(f"+{more} more", note), Text("s lists them", note))
        return table

    @staticmethod
    def _where(row: RunningModel, wide: bool, serving: bool) -> str:
        """`local · GPU 0`; narrow with the load column, `local/0` (engine/gpus, as `llm-mcp models`)."""
        if wide or not serving:
            return placement(row.engine, row.gpus, row.exclusive)
        return f"{row.engine}/{row.gpus}" + ("/excl" if row.exclusive else "")

    def _cells(self, row: RunningModel, primary: bool, wide: bool, serving: bool) -> list[Text]:
        state = row.state or "unknown"
        state_cell = Text(f"{STATE_ICON.get(state, '?')} {state}", STATE_STYLE.get(state, "bold"))
        health = row.health
        health_bad = state == "ready" and health not in (None, "ok")
        if health_bad and not wide and serving:  # the load column needs the room: the health alone
            state_cell = Text(f"{STATE_ICON.get(state, '?')} {visible(str(health))}", "yellow")
        elif health_bad and not wide:
            state_cell.append(f" ({visible(str(health))})", "yellow")
        cells = [Text(PRIMARY_MARK if primary else "", "bold yellow"), state_cell,
                 Text(clip(visible(row.id), WIDE_ID if wide else NARROW_ID), "bold" if primary else ""),
                 Text(visible(self._where(row, wide, serving)), "bright_black"),
                 speed_cell(row.speed)]
        if wide:
            cells.append(Text(visible(health or "-"), "yellow" if health_bad else "bright_black"))
        uptime = self.model.uptime(row) if state == "ready" else None
        up = "up " if wide or not serving else ""  # narrow with the load column: every cell counts
        cells.append(Text("" if uptime is None else f"{up}{duration(uptime)}"))
        if serving:
            cells.append(serving_cell(self.model, row))
        if wide:
            detail = row.health_detail.message if row.health_detail is not None else None
            note = row.reason if state != "ready" else detail if health_bad else None
            cells.append(Text(visible(note or ""), "red" if state == "failed" else "bright_black"))
        return cells
