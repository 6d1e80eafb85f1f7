"""The monitor against a real daemon and the real llama-server (tiny generated models).

Every test drives the app through Textual's Pilot, the way a person would:
keys in, screen out.
"""

from __future__ import annotations

import re

import pytest

from monitor import make_app
from monitor.app import MonitorApp
from monitor.profile_facts import tps
from monitor.screens import PickerScreen
from tests.monitor.conftest import LiveDaemon, wait_for
from tests.monitor.standin import screen_text

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]

SIZE = (120, 40)


def _running(app: MonitorApp, profile_id: str) -> bool:
    return app.model.state == "ready" and (app.model.profile or {}).get("id") == profile_id


async def _ensure_ready(app: MonitorApp, pilot: object, profile_id: str, digit: str) -> None:
    if not _running(app, profile_id):
        await pilot.press("m", digit)  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: _running(app, profile_id), 60, f"{profile_id} ready")  # type: ignore[arg-type]


async def test_m_then_a_digit_switches_and_the_screen_reaches_ready_with_the_new_name(
        real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "the monitor to connect (autostart)")
        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        picker = screen_text(app)
        assert "Tiny A" in picker and "Tiny B" in picker and "Tiny Broken" in picker
        assert "Tiny A bench" not in picker  # bench profiles live behind `b`
        target, digit = ("real-b", "2") if not _running(app, "real-b") else ("real-a", "1")
        await pilot.press(digit)
        assert not isinstance(app.screen, PickerScreen)
        await wait_for(pilot, lambda: _running(app, target), 60, f"{target} ready")
        await pilot.pause(0.3)
        header = screen_text(app).splitlines()[0]
        assert "ready" in header
        assert ("Tiny B" if target == "real-b" else "Tiny A") in header
        texts = app.log_view.visible_texts()
        name = "Tiny B" if target == "real-b" else "Tiny A"
        assert f"--- switching to {name} ---" in texts  # the separator of this switch
        assert any("model loaded" in t for t in texts)  # the real server's own log


async def test_b_shows_the_bench_profiles_and_esc_cancels_without_switching(real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        before = app.model.status.get("state"), (app.model.profile or {}).get("id")
        await pilot.press("m", "b")
        text = screen_text(app)
        assert "Bench profiles" in text and "Tiny A bench" in text
        assert "Tiny Broken" not in text
        await pilot.press("b")
        assert "Tiny Broken" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, PickerScreen)
        await pilot.pause(0.5)
        assert app.model.job is None
        assert (app.model.status.get("state"), (app.model.profile or {}).get("id")) == before


async def test_a_failing_profile_shows_its_reason_and_that_the_previous_model_came_back(
        real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await _ensure_ready(app, pilot, "real-a", "1")
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: app.model.failed_job() is not None and _running(app, "real-a"), 90,
                       "the failure and the rollback")
        await pilot.pause(0.3)
        text = screen_text(app)
        failed = app.model.failed_job()
        assert failed is not None
        assert "switch to Tiny Broken failed" in text
        assert f"({failed['reason']})" in text and failed["reason"] == "model_corrupt"
        assert "the previous model, Tiny A, was restored" in text
        assert "the log lines that show it" in text
        await pilot.press("x")
        assert "switch to Tiny Broken failed after" not in screen_text(app)


async def test_slash_filters_the_log_and_highlights_only_matching_lines(real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await _ensure_ready(app, pilot, "real-a", "1")
        log = app.log_view
        await wait_for(pilot, lambda: any("model loaded" in t for t in log.visible_texts()), 10, "log lines")
        total = len(log.visible_texts())
        await pilot.press("slash", *"model loaded")
        shown = log.visible_texts()
        assert 0 < len(shown) < total
        assert all("model loaded" in t.lower() or t.startswith("---") for t in shown)
        assert "filter /model loaded/" in str(log.border_subtitle)
        await pilot.press("enter")
        assert log.has_focus
        await pilot.press("n")
        assert not log.follow  # jumping to a match holds the view still
        await pilot.press("escape")
        assert log.pattern is None and len(log.visible_texts()) >= total


async def test_scrolling_up_pauses_the_follow_counts_new_lines_and_end_resumes(real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await pilot.press("x")  # an earlier test's failure panel would leave the log little room
        log = app.log_view
        for _ in range(3):  # each load writes about 20 lines: enough to overfill the panel
            if log.max_scroll_y > 2 and app.model.state == "ready":
                break
            await _switch_to_the_other(app, pilot)
        assert log.scrollable_content_region.height > 5 and log.max_scroll_y > 2
        assert log.follow and log.scroll_y == log.max_scroll_y
        await pilot.press("pageup")
        await wait_for(pilot, lambda: not log.follow, 5, "the follow to pause")
        await pilot.wait_for_scheduled_animations()
        held = log.scroll_y
        await _switch_to_the_other(app, pilot)  # a switch writes plenty of new lines
        await wait_for(pilot, lambda: log.unseen > 0, 10, "new lines counted while paused")
        await pilot.pause(0.3)
        assert log.scroll_y == held  # the view did not move under the reader
        assert f"+{log.unseen} new lines" in str(log.border_subtitle)
        await pilot.press("end")
        assert log.follow and log.unseen == 0
        await pilot.pause(0.1)
        assert log.scroll_y == log.max_scroll_y


async def _switch_to_the_other(app: MonitorApp, pilot: object) -> None:
    target, digit = ("real-b", "2") if _running(app, "real-a") else ("real-a", "1")
    await pilot.press("m", digit)  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: _running(app, target), 60, f"{target} ready")  # type: ignore[arg-type]


async def test_s_asks_first_then_stops_the_model(real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await _ensure_ready(app, pilot, "real-a", "1")
        await pilot.press("s")
        await pilot.pause()
        assert "Stop Tiny A?" in screen_text(app)
        await pilot.press("n")
        await pilot.pause(0.3)
        assert _running(app, "real-a")
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: app.model.state == "stopped", 30, "the model to stop")
        await pilot.pause(0.2)
        assert "○ stopped  no model running" in screen_text(app).splitlines()[0]


async def test_a_real_bench_shows_its_runs_in_the_switch_panel_then_its_numbers_in_the_picker_and_comparison(
        real_live: LiveDaemon) -> None:
    app = make_app(real_live.client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await pilot.press("m")
        await pilot.pause(0.3)
        header = next(row for row in screen_text(app).splitlines() if " name " in row)
        assert " fit " in header and "measured" in header  # this daemon reports both, before any key
        await pilot.press("escape")
        seen: set[str] = set()
        async with real_live.client("bench-caller", autostart=False) as caller:
            job = await caller.call("bench", models=["real-a", "real-b"], repeat=2, prompt_tokens=32,
                                    gen_tokens=8)

            def over() -> bool:
                if (app.model.job or {}).get("kind") == "bench":
                    panel = app.switch_panel.render().plain
                    if "⏱ bench" in panel:
                        seen.add("panel")
                    if "measuring" in panel and " run " in panel:
                        seen.add("run")
                return (app.model.last_job or {}).get("id") == job["id"] and app.model.job is None

            await wait_for(pilot, over, 240, "the bench to end")
        assert (app.model.last_job or {}).get("result") == "done", app.model.last_job
        assert "panel" in seen, "the bench never showed in the switch panel"
        benched = [m for m in app.model.models if m.get("id") in ("real-a", "real-b")]
        await wait_for(pilot, lambda: all(m.get("measured") for m in app.model.models
                                          if m.get("id") in ("real-a", "real-b")) and len(benched) == 2,
                       10, "the new numbers after the bench")
        await pilot.press("m")
        await pilot.pause(0.3)
        rows = screen_text(app).splitlines()
        for pid, name in (("real-a", "Tiny A "), ("real-b", "Tiny B ")):
            entry = next(m for m in app.model.models if m.get("id") == pid)
            median = entry["measured"]["gen_tps"]["median"]
            row = next(r for r in rows if name in r and "256" in r)
            assert f"{tps(median)} t/s" in row, row  # the measured median beside the expected speed
        await pilot.press("escape", "c")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "Bench results" in text and "llm-mcp bench real-broken" in text
        assert re.search(r"Tiny [AB] +[█▏▎▍▌▋▊▉░]+ +\d", text)  # a bar with its number
