"""The monitor in real terminals (tmux with the console script) and against a real daemon's answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import make_app
from monitor.screens import ConfirmScreen, PickerScreen
from tests.monitor.conftest import LiveDaemon, fake_monitor_profiles, wait_for
from tests.monitor.standin import screen_text

pytestmark = [pytest.mark.docker]

SCRIPT = Path(__file__).with_name("tmux_check.sh")


def monitor_command() -> str:
    script = Path(sys.executable).with_name("llm-monitor")
    return str(script) if script.exists() else f"{sys.executable} -m monitor"


def test_tmux_script_presses_m_and_a_digit_and_captures_the_ready_screen(
        fake_live: LiveDaemon, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (scripts/bootstrap.sh installs it)"
    out = tmp_path / "pane.txt"
    env = {**os.environ, "LLM_MONITOR": monitor_command(), "TMUX_CHECK_TIMEOUT": "60"}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "2", "Fake B"], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    pane = out.read_text(encoding="utf-8") if out.exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{pane}"
    lines = pane.splitlines()
    assert lines[0].startswith(" llm-mcp ● ready  Fake B (fake-b)")
    assert any("--- switching to Fake B ---" in line for line in lines)
    assert any("No visible GPUs" in line or "GPU 0" in line for line in lines)
    assert "m models" in lines[-1] or any("m models" in line for line in lines[-2:])


def test_at_80x24_a_failed_switch_keeps_the_header_the_close_hint_the_log_and_the_footer_on_screen(
        fake_live: LiveDaemon, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (scripts/bootstrap.sh installs it)"
    out = tmp_path / "pane.txt"
    env = {**os.environ, "LLM_MONITOR": monitor_command(), "TMUX_CHECK_TIMEOUT": "60",
           "TMUX_CHECK_SIZE": "80x24"}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "1", "Fake A", "3", "x closes"], env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    pane = out.read_text(encoding="utf-8") if out.exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{pane}"
    lines = pane.splitlines()
    assert len(lines) == 24
    assert lines[0].startswith(" llm-mcp ● ready  Fake A")
    assert "Fake OOM failed" in lines[1]  # the header's second row: the reason, cut to fit
    assert not lines[2].startswith(" ") or "No visible GPUs" in lines[2]  # the panels right below
    assert "m models" in lines[-1]
    failed = next(i for i, line in enumerate(lines) if "switch failed" in line)
    assert "out_of_memory" in lines[failed + 1]
    top = next(i for i, line in enumerate(lines) if line.startswith("╭─ log"))
    bottom = next(i for i, line in enumerate(lines) if i > top and line.startswith("╰"))
    assert bottom - top - 1 >= 3, pane  # three rows of log at least


@pytest.mark.anyio
async def test_the_monitor_starts_the_daemon_says_reconnecting_when_it_dies_and_recovers(
        fake_live: LiveDaemon) -> None:
    assert not fake_live.socket.exists()  # nothing runs yet: the monitor starts it
    app = make_app(fake_live.client)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "autostart and connect")
        first = app.model.daemon["pid"]
        await pilot.press("m", "1")
        await wait_for(pilot, lambda: app.model.state == "ready", 60, "Fake A ready")
        os.kill(first, signal.SIGTERM)
        await wait_for(pilot, lambda: not app.model.connected, 15, "the monitor to notice")
        assert "reconnecting…" in screen_text(app).splitlines()[0]
        await wait_for(pilot, lambda: app.model.connected, 60, "reconnect")
        assert app.model.daemon["pid"] != first  # a new daemon, started by the monitor's client
        await wait_for(pilot, lambda: app.model.state == "ready", 30, "the new daemon to adopt Fake A")
        assert (app.model.profile or {}).get("id") == "fake-a"
        header = screen_text(app).splitlines()[0]
        assert "● ready  Fake A" in header
        assert any("daemon restarted" in t for t in app.log_view.visible_texts())


@pytest.mark.anyio
async def test_with_nothing_running_the_picker_starts_on_the_default_the_daemon_reports(
        fake_live: LiveDaemon) -> None:
    fake_live.setup.write(fake_monitor_profiles(), defaults="default = fake-b")
    app = make_app(fake_live.client)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "autostart and connect")
        assert app.model.state == "stopped"
        await pilot.press("m")
        await wait_for(pilot, lambda: app.model.default_id == "fake-b", 10, "list_models to name the default")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        await pilot.pause()
        assert picker.rows[picker.cursor]["id"] == "fake-b"
        assert "Fake B (default)" in screen_text(app)


@pytest.mark.anyio
async def test_a_pick_that_does_not_fit_is_refused_by_the_real_daemon_with_its_numbers_and_the_model_runs_on(
        fit_live: LiveDaemon) -> None:
    app = make_app(fit_live.client)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model.connected, 30, "connect")
        await pilot.press("m", "1")
        await wait_for(pilot, lambda: app.model.state == "ready", 60, "Fake A ready")
        await pilot.press("m")
        await wait_for(pilot, lambda: "✗ won't fit" in screen_text(app), 10, "the verdict in the picker")
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the refusal")
        await pilot.pause()
        text = screen_text(app)
        assert "Huge does not fit: needs" in text and "on host" in text
        assert "host: needs" in text and "(won't fit)" in text
        assert "Nothing was stopped: Fake A keeps running." in text and "f force" in text
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert app.model.state == "ready" and (app.model.profile or {}).get("id") == "fake-a"
        assert app.model.job is None


def test_at_80x24_two_models_side_by_side_get_a_row_each_under_the_header_in_a_real_terminal(
        several_live: LiveDaemon, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (scripts/bootstrap.sh installs it)"
    out = tmp_path / "pane.txt"
    env = {**os.environ, "LLM_MONITOR": monitor_command(), "TMUX_CHECK_TIMEOUT": "60",
           "TMUX_CHECK_SIZE": "80x24"}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "1", "Fake A", "2", r"★ +● ready +fake-b .*up "],
                          env=env, capture_output=True, text=True, timeout=240, check=False)
    pane = out.read_text(encoding="utf-8") if out.exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{pane}"
    lines = pane.splitlines()
    assert len(lines) == 24
    assert lines[0].startswith(" llm-mcp ● ready  Fake B"), pane
    assert lines[2].split() == ["state", "model", "where", "speed", "uptime"], pane
    assert "● ready" in lines[3] and "fake-a" in lines[3] and "local · CPU" in lines[3], pane
    assert "★" in lines[4] and "fake-b" in lines[4], pane
    assert any(line.startswith("╭─ log · all") for line in lines), pane
    assert "l log" in lines[-1] and "q quit" in lines[-1], pane
