"""The header: current model, state, uptime, measured speed against the profile's."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from monitor.format import duration
from monitor.levels import STATE_STYLE
from monitor.model import Model

STATE_ICON = {"ready": "●", "loading": "◐", "starting": "◐", "stopping": "◑", "failed": "✗",
              "stopped": "○", "unknown": "◌"}


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar { height: auto; background: $panel; padding: 0 1; }
    """

    def __init__(self, model: Model, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    def render(self) -> Text:
        m = self.model
        text = Text(no_wrap=False, overflow="fold")
        text.append("llm-mcp ", "bold")
        if m.readonly:
            text.append("read-only", "reverse")
            text.append(" ")
        if not m.connected:
            text.append("◌ reconnecting… " if m.ever_connected else "◌ connecting… ", STATE_STYLE["unknown"])
            text.append(m.connection_note, "italic")
            return text
        state = m.state
        text.append(f"{STATE_ICON.get(state, '?')} {state}", STATE_STYLE.get(state, "bold"))
        profile = m.profile
        if profile is not None:
            text.append("  ")
            text.append(str(profile.get("name") or profile.get("id")), "bold")
            text.append(f" ({profile.get('id')})", "bright_black")
        elif state == "stopped":
            text.append("  no model running", "bright_black")
        if state == "ready":
            uptime = m.uptime()
            if uptime is not None:
                text.append(f"  up {duration(uptime)}")
            self._speed(text)
            self._offload(text)
        if m.status.get("stale_config"):
            text.append("  models.conf changed since start", "yellow")
        details: list[tuple[str, str]] = []
        if state == "ready" and m.status.get("endpoint"):
            details.append((str(m.status["endpoint"]), "bright_black"))
        if m.status.get("reason"):
            details.append((str(m.status["reason"]), "red" if state == "failed" else "bright_black"))
        if m.status.get("hint"):
            details.append((f"hint: {m.status['hint']}", "italic bright_black"))
        text.append("\n")
        for i, (part, style) in enumerate(details):
            text.append(" · " if i else "", "bright_black")
            text.append(part, style)
        return text

    def _speed(self, text: Text) -> None:
        speed = self.model.status.get("speed") or {}
        measured, expected = speed.get("measured_tps"), speed.get("expected_tps")
        if measured is None and expected is None:
            return
        text.append("  ")
        if measured is None:
            text.append(f"n/a t/s (expected {expected:g})", "bright_black")
            return
        ratio = speed.get("ratio")
        style = "green" if ratio is None or ratio >= 0.8 else "yellow"
        text.append(f"{measured:.1f} t/s", style)
        if expected:
            text.append(f" of {expected:g} expected")
            if ratio is not None:
                text.append(f" ({ratio * 100:.0f}%)", style)

    def _offload(self, text: Text) -> None:
        offload = self.model.status.get("offload")
        if not offload:
            return
        matches = offload.get("matches")
        style = "green" if matches else ("yellow" if matches is False else "")
        text.append(f"  GPU layers {offload.get('layers')}/{offload.get('total')}", style)
        if matches is False:
            text.append(f" (profile asks {offload.get('expected')})", "yellow")
