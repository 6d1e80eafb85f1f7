"""Behaviour of the monitor app against the STAND-IN client (fast, no Docker).

What needs a real daemon and llama-server is in test_monitor_live.py; these
cover the paths a real daemon rarely takes on cue (a busy answer, a dropped
connection, a burst of lines, ten profiles).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from monitor import make_app
from monitor.app import MonitorApp
from monitor.screens import CompareScreen, ConfirmScreen, HelpScreen, PickerScreen
from monitor.view_state import ViewState
from tests.monitor import standin as S
from tests.monitor.conftest import wait_for

pytestmark = pytest.mark.anyio

SIZE = (120, 36)
ROOT = Path(__file__).resolve().parents[2]


def make(status: dict[str, Any] | None = None, *, events: list[dict[str, Any]] | None = None,
         lines: list[dict[str, Any]] | None = None, readonly: bool = False, max_log_lines: int = 5000,
         **kwargs: Any) -> tuple[MonitorApp, S.StandInClient]:
    if events is None:
        events = [S.envelope(1, "gpu", S.gpu_snapshot())]
    client = S.StandInClient(status or S.status("ready", S.MODELS[0]), lines=lines, events=events, **kwargs)
    app = make_app(lambda: client, readonly=readonly, clock=S.frozen_clock, max_log_lines=max_log_lines)
    return app, client


async def settled(pilot: Pilot[None], client: S.StandInClient) -> None:
    app = pilot.app
    assert isinstance(app, MonitorApp)
    await wait_for(pilot, lambda: client.drained.is_set() and not app.catching_up, 5, "the script")
    app.flush_logs()
    await pilot.pause()


def calls(client: S.StandInClient, method: str) -> list[dict[str, Any]]:
    return [params for name, params in client.calls if name == method]


async def test_readonly_monitor_lists_models_but_neither_switches_nor_stops() -> None:
    app, client = make(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        assert "read-only" in S.screen_text(app).splitlines()[0]
        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        await pilot.press("2")
        assert isinstance(app.screen, PickerScreen)  # still open, saying why
        assert "switching is disabled" in S.screen_text(app)
        await pilot.press("escape", "s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert calls(client, "switch") == [] and calls(client, "stop") == []


async def test_picking_during_a_switch_in_flight_asks_the_daemon_then_offers_to_replace_it_or_keep_it(
        ) -> None:
    running = S.job("gpt-oss", "gpt-oss 120B", previous="qwen3-coder")
    app, client = make(S.status("loading", S.MODELS[1], job=running))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        text = S.screen_text(app)
        assert "a switch to gpt-oss 120B is in flight" in text
        await pilot.press("3")  # the pick goes to the daemon as is; its busy answer names the job
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        assert calls(client, "switch") == [{"model": "gemma3", "force": False, "wait": False}]
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.question == ("A switch to gpt-oss 120B is in flight (loading tensors). "
                                    "Replace it with Gemma 3 27B?")
        await pilot.pause()
        assert "A switch to gpt-oss 120B is in flight" in S.screen_text(app)
        await pilot.press("escape")  # keep it
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and len(calls(client, "switch")) == 1
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question again")
        await pilot.press("r")
        await wait_for(pilot, lambda: len(calls(client, "switch")) == 3, 5, "the forced switch")
        assert calls(client, "switch")[-1] == {"model": "gemma3", "force": True, "wait": False}


async def test_picking_the_profile_already_loading_joins_it_without_force() -> None:
    running = S.job("gpt-oss", "gpt-oss 120B", previous="qwen3-coder")
    app, client = make(S.status("loading", S.MODELS[1], job=running))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "2")
        await pilot.pause()
        assert calls(client, "switch") == [{"model": "gpt-oss", "force": False, "wait": False}]


async def test_a_busy_answer_from_the_daemon_asks_before_replacing() -> None:
    running = S.job("gpt-oss", "gpt-oss 120B", phase="loading")

    def answer(method: str, params: dict[str, Any]) -> Any:
        if method == "switch" and not params.get("force"):
            raise S.busy_error(running)
        return None

    app, client = make(S.status("ready", S.MODELS[0]), on_call=answer)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        await pilot.pause()
        assert "A switch to gpt-oss 120B is in flight" in S.screen_text(app)
        await pilot.press("r")
        await pilot.pause()
        assert calls(client, "switch")[-1] == {"model": "gemma3", "force": True, "wait": False}


async def test_s_asks_before_stopping_and_n_keeps_the_model_running() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Stop Qwen3 Coder 30B?" in S.screen_text(app)
        await pilot.press("n")
        assert calls(client, "stop") == []
        await pilot.press("s", "y")
        await pilot.pause()
        assert calls(client, "stop") == [{"force": False, "wait": False}]


async def test_s_with_nothing_running_says_so_instead_of_asking() -> None:
    app, client = make(S.status("stopped", None))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert calls(client, "stop") == []


async def test_two_digit_numbers_pick_when_there_are_ten_profiles_or_more() -> None:
    models = [S.profile(f"p{i}", f"Profile {i}", f"m{i}.gguf") for i in range(1, 13)]

    def finished(method: str, params: dict[str, Any]) -> Any:
        if method == "switch":
            return S.job(params["model"], params["model"], done=True, result="ready", phase="ready")
        return None

    app, client = make(S.status("stopped", None), models=models, on_call=finished)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "1", "2")
        await pilot.pause()
        await pilot.press("m", "3")  # nothing longer starts with 3: picked at once
        await pilot.pause()
        assert [c["model"] for c in calls(client, "switch")] == ["p12", "p3"]


async def test_the_dashboard_keeps_updating_under_the_picker() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        status_calls = len(calls(client, "status"))
        await client.live.put(S.envelope(50, "gpu", S.gpu_snapshot(util=(97.0, 12.0))))
        await client.live.put(S.envelope(51, "log", S.log_line(500, "a line while picking")))
        await wait_for(pilot, lambda: " 97%" in S.screen_text(app), 5, "the new sample under the overlay")
        await wait_for(pilot, lambda: "a line while picking" in S.screen_text(app), 5, "the new line")
        assert isinstance(app.screen, PickerScreen)
        assert app.model.connected and len(calls(client, "status")) == status_calls  # no reconnect


async def test_switch_progress_follows_job_events_and_a_finished_switch_clears_it() -> None:
    app, client = make(S.status("stopped", None))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        running = S.job("gemma3", "Gemma 3 27B", phase="loading_tensors", elapsed=6.0, estimate=24.0)
        await client.live.put(S.envelope(60, "job", running))
        await wait_for(pilot, lambda: "switching to Gemma 3 27B" in S.screen_text(app), 5, "progress")
        text = S.screen_text(app)
        assert "loading tensors" in text and "25%" in text and "6.0s of ~24s" in text
        done = {**running, "done": True, "result": "ready", "phase": "ready"}
        await client.live.put(S.envelope(61, "job", done))
        await wait_for(pilot, lambda: "switching to" not in S.screen_text(app), 5, "the panel to go")


async def test_the_daemon_going_away_shows_reconnecting_and_the_monitor_recovers() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        assert "● ready" in S.screen_text(app).splitlines()[0]
        client.drained.clear()
        client.connectable.clear()  # the daemon stays "down" until the test says otherwise
        await client.live.put(None)  # the connection drops
        await wait_for(pilot, lambda: not app.model.connected, 15, "the drop to show")
        assert "reconnecting…" in S.screen_text(app).splitlines()[0]
        await pilot.press("m")
        assert not isinstance(app.screen, PickerScreen)  # no picking while disconnected
        client.connectable.set()
        await wait_for(pilot, lambda: app.model.connected, 10, "the reconnect")
        assert "● ready" in S.screen_text(app).splitlines()[0]
        assert len(calls(client, "status")) >= 2


async def test_lines_around_the_subscription_are_neither_lost_nor_doubled() -> None:
    before = [S.log_line(i, f"line {i}") for i in range(1, 11)]
    # Lines 9-12 come as events; the tail taken after subscribing already has up to 11.
    events = [S.envelope(100 + i, "log", S.log_line(i, f"line {i}")) for i in range(9, 13)]
    app, client = make(events=events, lines=before)

    def later_tail(method: str, params: dict[str, Any]) -> Any:
        if method == "tail_logs" and len(calls(client, "tail_logs")) > 1:
            return {"lines": [S.log_line(i, f"line {i}") for i in range(1, 12)]}
        return None

    client.on_call = later_tail
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        assert [e.seq for e in app.log_view.entries] == list(range(1, 13))


async def test_a_burst_of_lines_is_written_in_a_few_batches_into_a_bounded_log() -> None:
    app, client = make(lines=[], max_log_lines=500)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        log = app.log_view
        batches = 0
        add = log.add

        def counting_add(lines: Any) -> None:
            nonlocal batches
            batches += 1
            add(lines)

        log.add = counting_add  # type: ignore[method-assign]
        for i in range(1, 5001):
            client.live.put_nowait(S.envelope(10_000 + i, "log", S.log_line(i, f"burst line {i}")))
        started = time.monotonic()
        await wait_for(pilot, lambda: bool(log.entries) and log.entries[-1].seq == 5000, 10, "the burst")
        assert time.monotonic() - started < 5
        assert len(log.entries) == 500 and log.entries[0].seq == 4501
        assert batches <= 20
        assert log.follow and log.scroll_y == log.max_scroll_y


async def test_log_keys_wrap_top_bottom_and_timestamps() -> None:
    long_line = "0.00.001.000 I " + "x" * 300
    lines = [S.log_line(i, f"line {i}") for i in range(1, 80)] + [S.log_line(80, long_line)]
    app, client = make(lines=lines)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        log = app.log_view
        rows = log.row_count
        await pilot.press("w")
        assert log.row_count > rows and "wrap" in str(log.border_subtitle)
        await pilot.press("w", "g")
        assert log.scroll_y == 0 and not log.follow
        assert "paused" in str(log.border_subtitle)
        await pilot.press("G")
        assert log.follow and log.scroll_y == log.max_scroll_y
        await pilot.press("t")
        assert log.timestamps
        await pilot.press("n")  # no filter yet: nothing to jump to
        assert log.follow


async def test_filter_highlights_and_n_N_walk_the_matches() -> None:
    lines = [S.log_line(i, f"line {i} {'error here' if i % 10 == 0 else 'fine'}") for i in range(1, 101)]
    app, client = make(lines=lines)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        log = app.log_view
        await pilot.press("slash", *"error", "enter")
        assert log.visible_texts() == [f"line {i} error here" for i in range(10, 101, 10)]
        await pilot.press("N")
        assert not log.follow
        last = log._current
        await pilot.press("N")
        assert log._current != last
        await pilot.press("n")
        assert log._current == last
        await pilot.press("escape")
        assert log.pattern is None and len(log.visible_texts()) == 100


async def test_help_lists_the_keys_and_escape_closes_it() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = S.screen_text(app)
        for key in ("model picker", "filter the log", "next / previous", "follow the log", "wrap", "stop"):
            assert key in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_no_gpu_is_a_panel_with_the_reason_and_a_hint() -> None:
    app, client = make(S.status("ready", S.MODELS[0], gpu=S.NO_GPU), events=[S.envelope(1, "gpu", S.NO_GPU)])
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "No visible GPUs: NVML library not found" in text
        assert "hint: install the NVIDIA driver" in text


def test_the_monitor_never_imports_docker_or_pynvml() -> None:
    code = ("import sys, monitor, monitor.app, monitor.__main__; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'pynvml')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_builds_the_client_from_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import monitor.__main__ as cli
    import monitor.app

    seen: dict[str, Any] = {}

    class FakeApp:
        def run(self) -> None:
            client = seen["factory"]()
            seen["client"] = (client.socket_path, client.config_path, client.name)

    def fake_make_app(factory: Any, *, readonly: bool = False) -> FakeApp:
        seen["factory"], seen["readonly"] = factory, readonly
        return FakeApp()

    monkeypatch.setattr(monitor.app, "make_app", fake_make_app)
    config = tmp_path / "models.conf"
    assert cli.main(["--config", str(config), "--socket", str(tmp_path / "s.sock"), "--readonly"]) == 0
    assert seen["readonly"] is True
    assert seen["client"] == (tmp_path / "s.sock", config, "llm-monitor")


async def test_dashboard_keys_wait_while_an_overlay_is_open() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        picker = app.screen
        await pilot.press("m", "s", "question_mark")
        await pilot.pause()
        assert app.screen is picker and len(app.screen_stack) == 2


async def test_events_the_daemon_dropped_for_a_slow_monitor_are_fetched_again() -> None:
    app, client = make(lines=[S.log_line(i, f"line {i}") for i in range(1, 6)])
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        client.lines = [S.log_line(i, f"line {i}") for i in range(1, 21)]  # 6-19 never came as events
        await client.live.put(S.envelope(900, "gpu", S.gpu_snapshot(), dropped=14))
        await client.live.put(S.envelope(901, "log", S.log_line(20, "line 20"), dropped=14))
        await wait_for(pilot, lambda: bool(app.log_view.entries) and app.log_view.entries[-1].seq == 20, 5,
                       "the catch-up")
        assert [e.seq for e in app.log_view.entries] == list(range(1, 21))


async def test_a_replace_question_whose_switch_finishes_meanwhile_turns_into_a_plain_switch() -> None:
    running = S.job("gpt-oss", "gpt-oss 120B", previous="qwen3-coder")
    app, client = make(S.status("loading", S.MODELS[1], job=running))
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        client.status = S.status("ready", S.MODELS[1])
        done = {**running, "done": True, "result": "ready", "phase": "ready"}
        await client.live.put(S.envelope(80, "job", done))
        await wait_for(pilot, lambda: "Replace" not in confirm.question, 5, "the question to follow the job")
        assert confirm.question == "The switch to gpt-oss 120B is over (ready). Switch to Gemma 3 27B now?"
        await pilot.pause()
        assert "is over (ready)" in S.screen_text(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: len(calls(client, "switch")) == 2, 5, "the switch")
        assert calls(client, "switch")[-1] == {"model": "gemma3", "force": False, "wait": False}


def test_a_status_answer_older_than_a_jobs_last_event_does_not_resurrect_it() -> None:
    model = ViewState(clock=S.frozen_clock)
    running = S.job("gemma3", "Gemma 3 27B", id="job-9")
    model.apply_job(running)
    model.apply_job({**running, "done": True, "result": "ready", "phase": "ready"})
    model.apply_status(S.status("loading", S.MODELS[2], job=running))  # sent before the job ended
    assert model.job is None
    model.apply_job({**running, "phase": "loading"})  # a late event of the same job
    assert model.job is None
    older = S.job("gpt-oss", "gpt-oss 120B", id="job-8", done=True, result="failed")
    model.apply_status(S.status("loading", S.MODELS[2], job=running, last=older))
    assert (model.last_job or {}).get("id") == "job-9"  # no older failure panel coming back


async def test_with_nothing_running_the_picker_preselects_the_models_conf_default() -> None:
    models = [dict(m) for m in S.MODELS]
    models[2]["default"] = True
    app, client = make(S.status("stopped", None), models=models)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        await pilot.pause()
        assert "Gemma 3 27B (default)" in S.screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(calls(client, "switch")), 5, "the switch")
        assert calls(client, "switch") == [{"model": "gemma3", "force": False, "wait": False}]


async def test_with_a_model_running_the_picker_preselects_it_not_the_default() -> None:
    models = [dict(m) for m in S.MODELS]
    models[2]["default"] = True
    app, client = make(S.status("ready", S.MODELS[1]), models=models)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        assert picker.rows[picker.cursor]["id"] == "gpt-oss"


@pytest.mark.parametrize("keys", [["m"], ["s"], ["question_mark"], ["c"]],
                         ids=["picker", "confirm", "help", "compare"])
async def test_q_quits_from_every_pop_up_as_it_says(keys: list[str]) -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press(*keys)
        await pilot.pause()
        assert len(app.screen_stack) == 2
        assert "q quit" in S.screen_text(app)
        await pilot.press("q")
        await pilot.pause()
        assert app._exit, "q did not quit"
        assert calls(client, "stop") == [] and calls(client, "switch") == []


async def test_q_in_the_filter_field_is_a_letter_not_quit() -> None:
    app, client = make(lines=[S.log_line(1, "a quiet line"), S.log_line(2, "another")])
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("slash", "q", "u")
        assert not app._exit
        assert app.filter_box.value == "qu" and app.log_view.visible_texts() == ["a quiet line"]


async def test_escape_sequences_from_a_container_are_shown_escaped_never_sent_to_the_terminal() -> None:
    evil = "\x1b]2;PWNED\x07\x1b[2J"
    failed = S.job("gemma3", f"Gemma {evil}", phase="failed", done=True, result="failed",
                   previous="qwen3-coder", restored=True, reason="model_corrupt", message=f"bad file {evil}",
                   hint=f"fix {evil}",
                   log_lines=[f"0.00.001.000 E {evil} error loading model"])
    status = S.status("ready", S.MODELS[0], last=failed, reason=f"switch failed {evil}", hint=f"hint {evil}")
    app, client = make(status, lines=[S.log_line(1, f"log {evil}")])
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "\x1b" not in text and "\x07" not in text
        assert "bad file \\x1b]2;PWNED\\x07\\x1b[2J" in text
        assert "E \\x1b]2;PWNED\\x07\\x1b[2J error loading model" in text
        assert "switch failed \\x1b]2;PWNED" in text


def _failed_with_long_texts() -> dict[str, Any]:
    hint = ("lower n_gpu_layers, the context size (ctx_size) or batch sizes, or keep more tensors on the CPU "
            "with override_tensor; check that no other process holds VRAM")
    failed = S.job("gemma3", "Gemma 3 27B", phase="failed", elapsed=8.7, done=True, result="failed",
                   previous="qwen3-coder", restored=True, reason="out_of_memory",
                   message="the GPU ran out of memory while loading the model", hint=hint,
                   log_lines=[f"0.01.020.{i:03d} E ggml_backend_cuda_buffer_type_alloc_buffer: "
                              "allocating 18944.00 MiB on device 0: cudaMalloc failed: out of memory"
                              for i in range(12)])
    return S.status("ready", S.MODELS[0], last=failed, measured=149.8,
                    reason="switch to Gemma 3 27B failed (out_of_memory); Qwen3 Coder 30B restored",
                    hint=hint)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("gpu", ["two-gpus", "no-gpu"])
async def test_the_failure_view_fits_the_terminal_with_its_close_hint_and_some_log(
        size: tuple[int, int], gpu: str) -> None:
    status = _failed_with_long_texts()
    sample = S.gpu_snapshot() if gpu == "two-gpus" else S.NO_GPU
    status["gpu"] = sample
    lines = [S.log_line(i, f"line {i}") for i in range(1, 60)]
    app, client = make(status, lines=lines, events=[S.envelope(1, "gpu", sample),
                                                    S.envelope(2, "system", S.system_sample())])
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        await pilot.pause()
        rows = S.screen_text(app).splitlines()
        assert app.status_bar.outer_size.height == 2
        assert app.switch_panel.display and app.switch_panel.region.bottom <= size[1] - 1
        assert any("x closes" in row for row in rows), "the close hint is off screen"
        assert app.log_view.region.bottom <= size[1] - 1 and app.log_view.outer_size.height >= 5
        assert "line 59" in "\n".join(rows)  # the newest log line is on screen
        assert "m models" in rows[-1]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_no_gpu_takes_one_or_two_rows(size: tuple[int, int]) -> None:
    app, client = make(S.status("ready", S.MODELS[0], gpu=S.NO_GPU),
                       events=[S.envelope(1, "gpu", S.NO_GPU), S.envelope(2, "system", S.system_sample())])
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        await pilot.pause()
        assert 1 <= app.gpu_panel.outer_size.height <= 2
        assert app.system_panel.outer_size.height <= 4  # two rows in a box, at full width
        text = S.screen_text(app)
        assert "No visible GPUs: NVML library not found" in text and "hint: install the NVIDIA" in text
        assert "server CPU 98%" in text


async def test_gpus_that_vanish_while_the_picker_is_open_shrink_to_the_no_gpu_line_underneath() -> None:
    app, client = make(events=[S.envelope(1, "gpu", S.gpu_snapshot()),
                               S.envelope(2, "system", S.system_sample())])
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        await client.live.put(S.envelope(3, "gpu", S.NO_GPU))  # the driver went away
        await wait_for(pilot, lambda: app.gpu_panel.outer_size.height <= 2, 5, "the no-GPU line")
        assert isinstance(app.screen, PickerScreen) and app.model.connected
        await pilot.press("escape")
        await pilot.pause()
        assert "No visible GPUs" in S.screen_text(app)


async def test_the_failure_panel_shows_the_lines_that_say_why_before_the_noise_around_them() -> None:
    noise = [f"0.00.000.{i:03d} W ggml_cuda_init: warning {i}" for i in range(10)]
    cause = "0.00.010.000 E llama_model_load: error loading model: tensor 'blk.0' data is not within the file"
    cleanup = [f"0.00.020.{i:03d} I cleanup {i}" for i in range(8)]
    failed = S.job("gemma3", "Gemma 3 27B", phase="failed", done=True, result="failed",
                   previous="qwen3-coder", restored=True, reason="model_corrupt",
                   message="the model file is corrupt", log_lines=[*noise[:5], cause, *noise[5:], *cleanup])
    app, client = make(S.status("ready", S.MODELS[0], last=failed), lines=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        rows = [row for row in S.screen_text(app).splitlines() if row.startswith("│   0.")]
        assert rows and "error loading model" in rows[0]


async def test_a_catastrophic_filter_regex_does_not_freeze_the_monitor_it_falls_back_to_plain_text() -> None:
    pattern = "(.*){1,100}[bc]"
    lines = [S.log_line(i, "a" * 60 + f" line {i}") for i in range(1, 2001)] + [S.log_line(2001, pattern)]
    app, client = make(lines=lines)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        started = time.monotonic()
        app.log_view.set_filter(pattern)  # backtracks for minutes per line
        assert time.monotonic() - started < 2
        assert app.log_view.visible_texts() == [pattern]  # matched as the text it is
        assert "too slow as a regex" in str(app.log_view.border_subtitle)
        await pilot.press("escape")
        app.log_view.set_filter("line 199[0-9]$")  # a sane regex still works as a regex
        assert len(app.log_view.visible_texts()) == 10


# ---- memory fit and bench results (list_models' "fit" and "measured") ------------------


def _refuse_wont_fit(method: str, params: dict[str, Any]) -> Any:
    """The daemon's pre-flight: gemma3 does not fit, unless forced."""
    if method == "switch" and params.get("model") == "gemma3" and not params.get("force"):
        raise S.wont_fit_error("gemma3")
    return None


async def test_the_picker_shows_each_profiles_fit_verdict_and_measured_speed_and_the_highlighted_ones_why(
        ) -> None:
    app, client = make(models=S.models_with_facts())
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        await pilot.pause()
        rows = S.screen_text(app).splitlines()
        qwen = next(r for r in rows if "Qwen3 Coder 30B (current)" in r)
        assert "✓ fits" in qwen and "151.2 t/s" in qwen and "140 t/s" in qwen
        gpt = next(r for r in rows if "gpt-oss 120B " in r and "131072" in r)
        assert "! tight" in gpt and "47.1 t/s" in gpt
        gemma = next(r for r in rows if "Gemma 3 27B" in r)
        assert "✗ won't fit" in gemma and " - " in gemma  # never benched: no number
        assert any("✓ fits: needs 17.70 GiB (±638.7 MiB) on gpu0, 23.50 GiB free" in r for r in rows)
        await pilot.press("down", "down")
        await pilot.pause()
        text = S.screen_text(app)
        assert "✗ does not fit: needs 21.30 GiB (±701.5 MiB) on gpu0, 18.20 GiB free" in text
        assert "not measured: llm-mcp bench gemma3" in text
        await pilot.press("b")  # the first bench profile: the daemon could not read its model file
        await pilot.pause()
        assert "? fit unknown: model file unreadable: truncated GGUF header" in S.screen_text(app)


async def test_the_picker_marks_verdicts_compactly_on_an_80_column_terminal_and_names_the_file_below(
        ) -> None:
    app, client = make(models=S.models_with_facts())
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        await pilot.pause()
        picker = app.screen.query_one("#picker")
        assert picker.region.right <= 80 and picker.region.bottom <= 24
        text = S.screen_text(app)
        assert "151.2 t/s" in text and "✗" in text and "won't fit" not in text  # marks only
        assert "model file: Qwen3-Coder-30B-A3B-Q4_K_M.gguf" in text
        assert "1-3 pick" in text  # the keys line still shows


async def test_an_older_daemon_without_fit_or_measured_fields_gets_the_picker_as_before() -> None:
    app, client = make()  # MODELS: neither "fit" nor "measured"
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        await pilot.pause()
        text = S.screen_text(app)
        header = next(r for r in text.splitlines() if " name " in r)
        assert "speed" in header and "fit" not in header and "measured" not in header
        assert "not measured" not in text and "won't fit" not in text


async def test_a_pick_that_does_not_fit_shows_the_daemons_numbers_and_forces_only_on_f_not_enter() -> None:
    app, client = make(models=S.models_with_facts(), on_call=_refuse_wont_fit)
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the refusal")
        await pilot.pause()
        text = S.screen_text(app)
        assert "Gemma 3 27B does not fit: needs 21.30 GiB (±701.5 MiB) on gpu0, 18.20 GiB free" in text
        assert "gpu0: needs 21.3 GiB, 18.2 GiB free (won't fit)" in text
        assert "host: needs 410 MiB, 22.7 GiB free (fits)" in text
        assert "hint: `llm-mcp fit gemma3 --suggest`" in text
        assert "Nothing was stopped: Qwen3 Coder 30B keeps running." in text
        assert "f force  ·  n/Esc cancel" in text
        await pilot.press("enter")  # a risky yes takes its own key
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and len(calls(client, "switch")) == 1
        await pilot.press("f")
        await wait_for(pilot, lambda: len(calls(client, "switch")) == 2, 5, "the forced switch")
        assert calls(client, "switch") == [{"model": "gemma3", "force": False, "wait": False},
                                           {"model": "gemma3", "force": True, "wait": False}]
        assert not isinstance(app.screen, ConfirmScreen)


async def test_escape_on_the_wont_fit_question_sends_nothing_more_and_the_model_keeps_running() -> None:
    app, client = make(models=S.models_with_facts(), on_call=_refuse_wont_fit)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the refusal")
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        assert calls(client, "switch") == [{"model": "gemma3", "force": False, "wait": False}]
        assert calls(client, "stop") == [] and "● ready" in S.screen_text(app).splitlines()[0]


async def test_c_compares_the_bench_results_fastest_first_and_lists_the_unmeasured_with_their_command(
        ) -> None:
    app, client = make(models=S.models_with_facts())
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        rows = S.screen_text(app).splitlines()
        at = [next(i for i, row in enumerate(rows) if name in row and number in row)
              for name, number in (("Qwen3 Coder 30B", "151.2"), ("Qwen3 Coder Q8 (bench)", "118.6"),
                                   ("gpt-oss 120B ", "47.1"))]
        assert at == sorted(at) and len(set(at)) == 3  # fastest first, one row each
        fastest = next(r for r in rows if "Qwen3 Coder 30B" in r and "151.2" in r)
        slowest = next(r for r in rows if "gpt-oss 120B " in r and "47.1" in r)
        assert "2850" in fastest and "6.4s" in fastest and "950.2" in slowest and "31s" in slowest
        text = "\n".join(rows)
        assert "llm-mcp bench gemma3" in text and "llm-mcp bench gpt-oss-cpu-moe" in text
        assert "image: ghcr.io/ggml-org/llama.cpp:server-cuda" in text
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        await pilot.press("c", "c")  # c closes it too
        await pilot.pause()
        assert len(app.screen_stack) == 1


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_the_comparison_fits_the_terminal_with_every_profile_and_its_keys(
        size: tuple[int, int]) -> None:
    app, client = make(models=S.models_with_facts())
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        await pilot.press("c")
        await pilot.pause()
        box = app.screen.query_one("#compare")
        assert box.region.right <= size[0] and box.region.bottom <= size[1]
        text = S.screen_text(app)
        for name in ("Qwen3 Coder 30B", "gpt-oss 120B", "Gemma 3 27B", "llm-mcp bench gpt-oss-cpu-moe"):
            assert name in text
        assert "c/Esc close" in text and "q quit" in text
        assert all(len(row) <= size[0] for row in text.splitlines())


async def test_the_comparison_says_when_the_daemon_reports_no_bench_results_at_all() -> None:
    app, client = make()
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, client)
        await pilot.press("c")
        await pilot.pause()
        assert "This daemon does not report bench results" in S.screen_text(app)


async def test_a_bench_in_flight_shows_its_profile_step_and_run_and_its_end_refreshes_the_numbers() -> None:
    app, client = make(S.status("ready", S.MODELS[0]), models=S.models_with_facts())
    order = ["qwen3-coder-bench-q8", "gpt-oss-cpu-moe"]
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot, client)
        listed = len(calls(client, "list_models"))
        loading = S.bench_job(order, step="loading", phase="loading_tensors", run=0)
        await client.live.put(S.envelope(70, "job", loading))
        await wait_for(pilot, lambda: "⏱ bench 1/2: Qwen3 Coder Q8 (bench)" in S.screen_text(app), 5,
                       "the bench panel")
        text = S.screen_text(app)
        assert "loading tensors" in text
        assert "loading the profile, then a warm-up and 3 runs of 512" in text  # wrapped at 80 columns
        done = {"qwen3-coder-bench-q8": S.measured(118.6, 2410.0, 9.8)}
        await client.live.put(S.envelope(71, "job", S.bench_job(order, index=1, run=2, results=done)))
        await wait_for(pilot, lambda: "run 2/3" in S.screen_text(app), 5, "the second profile's run")
        text = S.screen_text(app)
        assert "⏱ bench 2/2: gpt-oss 120B all experts on CPU" in text and "measuring" in text
        assert "✓ Qwen3 Coder Q8 (bench) 118.6 t/s" in text
        finished = S.bench_job(order, index=1, run=3, results=done, done=True, result="done",
                               detail="measured 2 of 2 profiles; qwen3-coder restored")
        await client.live.put(S.envelope(72, "job", finished))
        await wait_for(pilot, lambda: "⏱ bench" not in S.screen_text(app), 5, "the panel to go")
        await wait_for(pilot, lambda: len(calls(client, "list_models")) > listed, 5, "the new numbers")


def test_fit_and_measured_fields_that_make_no_sense_read_as_absent_never_as_an_error() -> None:
    from monitor.profile_facts import fit_of, fit_sentence, measured_of

    assert fit_of({}) is None and measured_of({}) is None  # an older daemon
    assert measured_of({"measured": None}) is None  # never benched
    assert fit_of({"fit": {"verdict": "maybe"}}) is None
    assert fit_of({"fit": "fits"}) is None
    odd = fit_of({"fit": {"verdict": "tight", "devices": [{"device": "gpu0"}, "x", {"need_bytes": True}]}})
    assert odd is not None and odd.devices == () and odd.message == ""
    assert measured_of({"measured": {"gen_tps": {"median": "fast"}, "load_seconds": 3}}) is None
    partial = measured_of({"measured": {"gen_tps": {"median": 12.5}, "runs": 3}})
    assert partial is not None and partial.gen_tps is not None and partial.gen_tps.low == 12.5
    bare = fit_of({"fit": {"verdict": "unknown", "message": "", "error": "no memory figures"}})
    assert bare is not None and fit_sentence(bare) == "fit unknown: no memory figures"
    terse = fit_of({"fit": {"verdict": "wont_fit", "message": "needs 3 GiB on gpu0"}})
    assert terse is not None and fit_sentence(terse) == "won't fit: needs 3 GiB on gpu0"


async def test_the_header_says_when_its_speed_is_the_stored_bench_median_not_this_runs() -> None:
    status = S.status("ready", S.MODELS[0], measured=151.2)
    status["speed"].update(source="bench", bench_tps=151.2)
    app, client = make(status)
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, client)
        assert "151.2 t/s (bench) of 140 expected (108%)" in S.screen_text(app).splitlines()[0]
        status["speed"]["source"] = "log"
        client.status = status
        await client.live.put(S.envelope(90, "state", {"state": "ready"}))
        await wait_for(pilot, lambda: "(bench)" not in S.screen_text(app).splitlines()[0], 5, "live speed")
