"""`?`: every key, in one place."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("m", "model picker: 1-9 pick, b bench profiles, ↑↓ Enter, Esc cancel"),
    ("c", "compare the profiles' bench results (generation, prompt, load); Esc closes"),
    ("s", "stop a model (asks which when several run, a: all), after a confirmation"),
    ("/", "filter the log (regex or text); Enter keeps it, Esc clears it"),
    ("n / N", "next / previous matching line"),
    ("f / End", "follow the log again (scrolling up pauses it)"),
    ("g / G", "top / bottom of the log"),
    ("w", "wrap long lines"),
    ("t", "timestamps"),
    ("l", "log: all models (each line tagged) → one model → the next …; when several run"),
    ("x", "close the failure panel"),
    ("? / F1", "this help"),
    ("q / Ctrl+Q", "quit, from any screen but the filter field (the model keeps running)"),
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 96; max-width: 95%; height: auto; max-height: 100%; padding: 0 2;
        border: thick $primary; background: $surface;
    }
    """

    BINDINGS = [
        Binding("escape,question_mark,f1", "dismiss(None)", "close"),
        Binding("q", "app.quit", "quit"),  # q quits everywhere, as the footer says
    ]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical():
            yield Static("llm-monitor keys", classes="title")
            yield Static(table)
            yield Static("\nQuitting the monitor never stops the model. --readonly disables m picks and s."
                         "\nEsc, ? or F1 closes this help.", markup=False)
