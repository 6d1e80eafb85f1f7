"""A yes/no question over the dashboard."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 72; max-width: 95%; height: auto; padding: 1 2;
        border: thick $warning; background: $surface;
    }
    ConfirmScreen .keys { color: $text-muted; margin-top: 1; }
    ConfirmScreen.danger > Vertical { border: thick $error; width: 84; }
    """

    BINDINGS = [
        Binding("escape,n", "answer(False)", "cancel"),
        Binding("q", "app.quit", "quit"),  # q quits everywhere (nvitop, btop); only a text field takes it
    ]

    def __init__(self, question: str, yes_key: str = "y", yes_label: str = "yes", *,
                 danger: bool = False) -> None:
        """`danger`: a risky yes (forcing a load that does not fit) takes its own key, never Enter."""
        super().__init__(classes="danger" if danger else None)
        self.question = question
        self.yes_key = yes_key
        self.yes_label = yes_label
        self.enter_answers = not danger
        self._bindings.bind(f"{yes_key},enter" if self.enter_answers else yes_key, "answer(True)", yes_label)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False, id="question")
            yield Static(self._keys(), classes="keys", markup=False, id="keys")

    def _keys(self) -> str:
        yes = f"{self.yes_key}/Enter" if self.enter_answers else self.yes_key
        return f"{yes} {self.yes_label}  ·  n/Esc cancel  ·  q quit"

    def reword(self, question: str, yes_label: str) -> None:
        """The situation changed while the question was open (the job it was about ended)."""
        self.question, self.yes_label = question, yes_label
        if self.is_mounted:
            self.query_one("#question", Static).update(question)
            self.query_one("#keys", Static).update(self._keys())

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
