"""`s` with several models running: which one to stop (a digit), or `a` for all of them."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from llm_mcp.wire import RunningModel
from monitor.format import placement, visible
from monitor.levels import STATE_STYLE
from monitor.widgets.status_bar import STATE_ICON

ALL = "*"  # the answer for "stop every model"


class StopPickerScreen(ModalScreen[str | None]):
    """Dismissed with a model id, ALL, or None (Esc)."""

    DEFAULT_CSS = """
    StopPickerScreen { align: center middle; }
    StopPickerScreen > Vertical {
        width: 72; max-width: 95%; height: auto; padding: 0 1;
        border: thick $warning; background: $surface;
    }
    """

    BINDINGS = [
        Binding("escape,n", "dismiss(None)", "cancel"),
        Binding("a", "dismiss('*')", "stop all"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, rows: list[RunningModel], primary: str | None) -> None:
        super().__init__()
        self.rows = rows[:9]  # one digit each
        self.primary = primary

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._body(), id="stop-body")

    def on_key(self, event: events.Key) -> None:
        if event.character is not None and event.character.isdigit():
            event.stop()
            event.prevent_default()
            index = int(event.character) - 1
            if 0 <= index < len(self.rows):
                self.dismiss(self.rows[index].id)
            else:
                self.app.bell()

    def _body(self) -> RenderableType:
        table = Table(box=None, padding=(0, 1), show_header=False, show_edge=False)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis")
        table.add_column(no_wrap=True)
        for i, row in enumerate(self.rows):
            state = row.state
            name = Text(visible(row.name or row.id), "bold")
            if row.id == self.primary:
                name.append(" ★", "bold yellow")
            table.add_row(Text(str(i + 1), "bold cyan"),
                          Text(f"{STATE_ICON.get(state, '?')} {state}", STATE_STYLE.get(state, "bold")),
                          name, Text(visible(placement(row.engine, row.gpus, row.exclusive)), "bright_black"))
        count = len(self.rows)
        keys = Text(f"{'1' if count == 1 else f'1-{count}'} stop one (the rest keep serving) · a all · "
                    "Esc cancel · q quit", "bright_black")
        return Group(Text("Stop which model?", "bold"), table, keys)
