"""Several models at once against a real daemon and real Docker (the fake llama-server image):
two models side by side in the rows, the log by model, the picker's "replaces", `s` stopping one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from monitor import make_app
from monitor.screens import ConfirmScreen, PickerScreen, StopPickerScreen
from tests.conftest import FAKE_IMAGE, free_port
from tests.monitor.conftest import LiveDaemon, _live, wait_for
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
        await wait_for(pilot, lambda: app.model_rows.display, 15, "the rows")
        text = screen_text(app)
        a, b = row_of(text, "fake-a"), row_of(text, "fake-b")
        assert "● ready" in a and "local · CPU" in a and "up " in a
        assert b.lstrip().startswith("★") and "● ready" in b  # the last switch's target is the primary
        assert text.splitlines()[0].startswith(" llm-mcp ● ready  Fake B (fake-b)")

        log = app.log_view
        await wait_for(pilot, lambda: {"fake-a", "fake-b"} <= set(log.models), 30, "both models' lines")
        await wait_for(pilot, lambda: "l log" in screen_text(app).splitlines()[-1], 15, "l in the footer")
        assert "╭─ log · all " in screen_text(app)
        await pilot.press("l")
        assert log.source == "fake-a" and "╭─ log · fake-a " in screen_text(app)
        shown = [entry for entry, start in log._rows if start == 0]
        assert shown and {entry.model for entry in shown} == {"fake-a"}
        await pilot.press("l", "l")
        assert log.source is None

        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        await wait_for(pilot, lambda: "replaces fake-a, fake-b" in screen_text(app), 30,
                       "the exclusive profile's would_replace")
        assert "runs on local · CPU · excl" not in screen_text(app)  # the cursor is on a running one
        await pilot.press("escape", "s")
        await wait_for(pilot, lambda: isinstance(app.screen, StopPickerScreen), 15, "which model?")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 15, "the question")
        assert "Fake B keeps serving." in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.model.serving_ids() == ["fake-b"], 30, "Fake A unloaded")
        await wait_for(pilot, lambda: not app.model_rows.display, 15, "the rows to go (one model left)")
        assert app.model.state == "ready" and (app.model.profile or {}).get("id") == "fake-b"
        assert screen_text(app).splitlines()[0].startswith(" llm-mcp ● ready  Fake B (fake-b)")


# ---- the model endpoint ([proxy]) of a real daemon ------------------------------------------


@pytest.fixture
def proxy_live(tmp_path: Path, models_dir: Path, docker_engine: None) -> Iterator[tuple[LiveDaemon, int]]:
    """A daemon (autostarted by the monitor) serving the endpoint; fake-slow streams 20 tokens/s."""
    port = free_port()
    profiles = (f"\n[fake-slow]\nname = Fake Slow\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\ngpus = none\n"
                f"port = auto\nflags = --fake-load-seconds 1 --fake-tps 20\nttl = 600\n"
                f"\n[proxy]\nlisten = 127.0.0.1:{port}\n")
    for live in _live(tmp_path, models_dir, profiles):
        yield live, port


async def test_the_header_shows_the_endpoint_and_a_request_in_flight_then_the_ttl(
        proxy_live: tuple[LiveDaemon, int]) -> None:
    live, port = proxy_live
    app = make_app(live.client)
    body = {"model": "fake-slow", "max_tokens": 60, "stream": True,
            "messages": [{"role": "user", "content": "count"}]}

    async def ask() -> None:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with httpx.AsyncClient(timeout=120) as http, http.stream("POST", url, json=body) as r:
            assert r.status_code == 200
            async for _ in r.aiter_lines():
                pass

    async with app.run_test(size=(80, 24)) as pilot, anyio.create_task_group() as tg:
        await wait_for(pilot, lambda: app.model.connected, 30, "autostart and connect")
        assert f"endpoint http://127.0.0.1:{port}/v1" in screen_text(app).splitlines()[1]
        tg.start_soon(ask)  # loads fake-slow on demand, then streams for about three seconds
        await wait_for(pilot, lambda: "⇅1" in screen_text(app).splitlines()[0], 60, "the request in flight")
        assert app.model.state == "ready"
        await wait_for(pilot, lambda: "ttl " in screen_text(app).splitlines()[0], 30, "the ttl once it ends")
        assert "⇅" not in screen_text(app).splitlines()[0]
