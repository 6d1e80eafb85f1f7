"""Several models at once against a real daemon and real Docker (the fake llama-server image):
two models side by side in the rows, the log by model, the picker's "replaces", `s` stopping one."""

from __future__ import annotations

import pytest

from monitor import make_app
from monitor.screens import ConfirmScreen, PickerScreen, StopPickerScreen
from tests.monitor.conftest import LiveDaemon, wait_for
from tests.monitor.standin import screen_text

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def row_of(text: str, model_id: str) -> str:
    return next(line for line in text.splitlines() if f" {model_id} " in line and "│" not in line)


async def test_two_models_side_by_side_their_rows_their_logs_what_a_pick_replaces_and_stopping_one(
        several_live: LiveDaemon) -> None:
    app = make_app(several_live.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "autostart and connect")
        await pilot.press("m", "1")
        await wait_for(pilot, lambda: app.model.state == "ready", 60, "Fake A ready")
        await pilot.press("m", "2")
        await wait_for(pilot, lambda: [r.state for r in app.model.running] == ["ready", "ready"], 60,
                       "Fake B ready beside Fake A")
        await wait_for(pilot, lambda: app.model_rows.display, 5, "the rows")
        text = screen_text(app)
        a, b = row_of(text, "fake-a"), row_of(text, "fake-b")
        assert "● ready" in a and "local · CPU" in a and "up " in a
        assert b.lstrip().startswith("★") and "● ready" in b  # the last switch's target is the primary
        assert text.splitlines()[0].startswith(" llm-mcp ● ready  Fake B (fake-b)")

        log = app.log_view
        await wait_for(pilot, lambda: {"fake-a", "fake-b"} <= set(log.models), 10, "both models' lines")
        await wait_for(pilot, lambda: "l log" in screen_text(app).splitlines()[-1], 5, "l in the footer")
        assert "╭─ log · all " in screen_text(app)
        await pilot.press("l")
        assert log.source == "fake-a" and "╭─ log · fake-a " in screen_text(app)
        shown = [entry for entry, start in log._rows if start == 0]
        assert shown and {entry.model for entry in shown} == {"fake-a"}
        await pilot.press("l", "l")
        assert log.source is None

        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        await wait_for(pilot, lambda: "replaces fake-a, fake-b" in screen_text(app), 10,
                       "the exclusive profile's would_replace")
        assert "runs on local · CPU · excl" not in screen_text(app)  # the cursor is on a running one
        await pilot.press("escape", "s")
        await wait_for(pilot, lambda: isinstance(app.screen, StopPickerScreen), 5, "which model?")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        assert "Fake B keeps serving." in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.model.serving_ids() == ["fake-b"], 30, "Fake A unloaded")
        await wait_for(pilot, lambda: not app.model_rows.display, 5, "the rows to go (one model left)")
        assert app.model.state == "ready" and (app.model.profile or {}).get("id") == "fake-b"
        assert screen_text(app).splitlines()[0].startswith(" llm-mcp ● ready  Fake B (fake-b)")
