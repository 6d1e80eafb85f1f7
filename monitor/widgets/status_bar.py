"""The header: current model, state, uptime, measured speed against the profile's.

Always two rows, whatever the terminal's width and the daemon's messages: each row
is cut with an ellipsis (the failure panel and `llm-mcp status` have the full text),
so the panels below never move when a long reason arrives.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from monitor.format import duration, placement, requests_badge, visible
from monitor.levels import STATE_STYLE
from monitor.view_state import ViewState

STATE_ICON = {"ready": "●", "loading": "◐", "starting": "◐", "stopping": "◑", "failed": "✗",
              "stopped": "○", "unknown": "◌"}


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, model: ViewState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    def render(self) -> Text:
        m = self.model
        if not m.connected:
            text = self._start()
            text.append("◌ reconnecting… " if m.ever_connected else "◌ connecting… ", STATE_STYLE["unknown"])
            text.append(visible(m.connection_note), "italic")
            return text
        room = self.size.width - 2  # the padding
        text = self._first_row(compact=False)
        if room > 0 and cell_len(text.plain) > room:
            text = self._first_row(compact=True)
        details: list[tuple[str, str]] = []
        state = m.state
        if m.endpoint_url is not None:  # where any client reaches every model
            details.append((f"endpoint {visible(m.endpoint_url)}", "cyan"))
        elif m.endpoint_error is not None:
            details.append((f"endpoint NOT served: {visible(m.endpoint_error)}", "red"))
        if state == "ready" and m.status.get("endpoint"):
            details.append((str(m.status["endpoint"]), "bright_black"))
        rows = m.running
        if m.several and len(rows) == 1:  # the rows table shows it when several run
            row = rows[0]
            details.append((visible(placement(row.engine, row.gpus, row.exclusive)), "bright_black"))
        if m.status.get("reason"):
            details.append((visible(str(m.status["reason"])), "red" if state == "failed" else "bright_black"))
        if m.status.get("hint") and m.failed_job() is None:  # the failure panel shows the hint in full
            details.append((f"hint: {visible(str(m.status['hint']))}", "italic bright_black"))
        text.append("\n")
        for i, (part, style) in enumerate(details):
            text.append(" · " if i else "", "bright_black")
            text.append(part, style)
        return text

    def _start(self) -> Text:
        text = Text()
        text.append("llm-mcp ", "bold")
        if self.model.readonly:
            text.append("read-only", "reverse")
            text.append(" ")
        return text

    def _first_row(self, *, compact: bool) -> Text:
        m = self.model
        text = self._start()
        state = m.state
        text.append(f"{STATE_ICON.get(state, '?')} {state}", STATE_STYLE.get(state, "bold"))
        profile = m.profile
        if profile is not None:
            text.append("  ")
            text.append(visible(str(profile.get("name") or profile.get("id"))), "bold")
            if not compact:
                text.append(f" ({visible(str(profile.get('id')))})", "bright_black")
        elif state == "stopped":
            text.append("  no model running", "bright_black")
        self._serving(text)  # before the rest: it changes by the second, the rest seldom
        if state == "ready":
            uptime = m.uptime()
            if uptime is not None:
                text.append(f"  up {duration(uptime)}")
            self._speed(text, compact)
            self._offload(text, compact)
        if m.status.get("stale_config"):
            text.append("  models.conf changed since start", "yellow")
        return text

    def _serving(self, text: Text) -> None:
        """The primary model's requests and ttl, when the header is its only row."""
        m = self.model
        if len(m.serving_ids()) > 1:  # the rows table shows them per model
            return
        row = next((r for r in m.running if r.id == m.primary_id), None)
        if row is None:
            return
        badge = requests_badge(row.requests.in_flight, row.requests.queued) if row.requests else ""
        if badge:
            text.append(f"  {badge}", "cyan")
            return
        left = m.ttl_left(row)
        if left is not None:
            text.append(f"  ttl {duration(left)}", "yellow" if left < 60 else "bright_black")

    def _speed(self, text: Text, compact: bool) -> None:
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
        if compact and expected:
            text.append(f"{measured:.1f}/{expected:g} t/s", style)
        else:
            text.append(f"{measured:.1f} t/s", style)
            if speed.get("source") == "bench":  # the stored `llm-mcp bench` median, not this run's
                text.append(" (bench)", "bright_black")
        if expected:
            if not compact:
                text.append(f" of {expected:g} expected")
            if ratio is not None:
                text.append(f" ({ratio * 100:.0f}%)", style)

    def _offload(self, text: Text, compact: bool) -> None:
        offload = self.model.status.get("offload")
        if not offload:
            return
        matches = offload.get("matches")
        style = "green" if matches else ("yellow" if matches is False else "")
        label = "layers" if compact else "GPU layers"
        text.append(f"  {label} {offload.get('layers')}/{offload.get('total')}", style)
        if matches is False:
            text.append(f" (profile asks {offload.get('expected')})", "yellow")
