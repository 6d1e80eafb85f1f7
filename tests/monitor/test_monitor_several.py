"""Several models at once (issue 8) against the STAND-IN client: the rows, the log by model,
the picker's "replaces / runs beside", stopping one model. Fast, no Docker."""

from __future__ import annotations

from typing import Any

import pytest

from monitor import make_app
from monitor.app import MonitorApp
from monitor.screens import ConfirmScreen, PickerScreen, StopPickerScreen
from monitor.view_state import ViewState
from monitor.widgets.model_rows import MAX_ROWS, MAX_ROWS_SHORT
from tests.monitor import standin as S
from tests.monitor.conftest import wait_for
from tests.monitor.test_monitor_app import calls, settled

pytestmark = pytest.mark.anyio

SMALL, LARGE = (80, 24), (120, 40)
BOTH = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])


def three() -> list[dict[str, Any]]:
    return [S.running_model("qwen3-coder", measured=151.2, port=8081),
            S.running_model("gemma3", measured=36.0, port=8082, uptime=610, health="unresponsive"),
            S.running_model("nomic-embed", "loading", port=8083, uptime=12)]


def two() -> list[dict[str, Any]]:
    return three()[:2]


MIXED_LOG = [S.model_line(1, "qwen3-coder", "0.00.012.311 I coder says hello"),
             S.model_line(2, "gemma3", "0.00.013.120 I gemma says hello"),
             S.model_line(3, None, "--- a note about no model ---", "separator"),
             S.model_line(4, "qwen3-coder", "0.06.381.120 I coder again")]


def make(rows: list[dict[str, Any]], primary: str | None = "qwen3-coder", *,
         lines: list[dict[str, Any]] | None = None, **kwargs: Any) -> tuple[MonitorApp, S.StandInClient]:
    running = {r["id"]: r["state"] for r in rows}
    client = S.StandInClient(S.several(rows, primary), models=S.entries(running), lines=lines,
                             events=[S.envelope(1, "gpu", S.gpu_snapshot())], **kwargs)
    return make_app(lambda: client, clock=S.frozen_clock), client


def row_of(text: str, model_id: str) -> str:
    return next(line for line in text.splitlines() if f" {model_id} " in line and "│" not in line)


@BOTH
async def test_a_row_per_running_model_with_its_state_place_speed_and_uptime_the_primary_starred(
        size: tuple[int, int]) -> None:
    app, client = make(three())
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        coder, gemma, embed = (row_of(text, i) for i in ("qwen3-coder", "gemma3", "nomic-embed"))
        assert coder.lstrip().startswith("★") and "★" not in gemma + embed
        assert "● ready" in coder and "local · GPU 0" in coder
        assert "151.2 t/s" in coder and "up 1h02m" in coder
        assert "local · GPU 1" in gemma and "36.0 t/s" in gemma and "up 10m10s" in gemma
        assert "◐ loading" in embed and "cpu-box · CPU" in embed
        assert text.splitlines()[0].startswith(" llm-mcp ● ready  Qwen3 Coder 30B")  # the header: primary
        if size == LARGE:  # every column, the health one too
            assert "health" in text and "unresponsive" in gemma and " ok " in coder
        else:  # no health column: a health that is not ok shows in the state cell
            assert "health" not in text and "ready (unresponsive)" in gemma


async def test_at_80_columns_a_long_id_is_cut_and_the_rows_stay_on_one_line_each() -> None:
    rows = two()
    rows[1] = {**rows[1], "id": "gemma3-27b-it-qat-with-a-very-long-profile-id"}
    app, client = make(rows)
    async with app.run_test(size=SMALL) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "gemma3-27b-it-qat…" in text and "very-long" not in text
        assert len(text.splitlines()) == 24


@BOTH
async def test_many_models_are_listed_up_to_a_limit_with_the_primary_and_the_rest_counted(
        size: tuple[int, int]) -> None:
    rows = [{**S.running_model("gemma3", port=9000 + i), "id": f"m{i}"} for i in range(10)]
    app, client = make(rows, "m9")
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        listed = MAX_ROWS_SHORT if size == SMALL else MAX_ROWS
        assert [f" m{i} " in text for i in range(9)] == [i < listed - 2 for i in range(9)]
        assert "★" in row_of(text, "m9") and f"+{10 - listed + 1} more  s lists them" in text
        assert len(text.splitlines()) == size[1] and "╭─ log" in text


async def test_with_nothing_running_there_are_no_rows_and_the_header_says_so() -> None:
    app, client = make([], None)
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "○ stopped  no model running" in text.splitlines()[0]
        assert not app.model_rows.display and "uptime" not in text


async def test_one_model_is_the_header_alone_with_where_it_runs_on_the_second_line() -> None:
    app, client = make(three()[:1])
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        lines = S.screen_text(app).splitlines()
        assert not app.model_rows.display
        assert lines[0].startswith(" llm-mcp ● ready  Qwen3 Coder 30B") and "local · GPU 0" in lines[1]


async def test_an_older_daemon_without_models_gives_one_row_from_its_top_level_fields() -> None:
    app, client = make([])
    client.status = S.status("ready", S.MODELS[0], measured=151.2)  # no `models`, no `primary`
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        [row] = app.model.running
        assert (row.id, row.state, row.engine, row.gpus) == ("qwen3-coder", "ready", "local", "all")
        assert app.model.uptime(row) == 3723.0 and row.speed is not None and row.speed.measured_tps == 151.2
        assert not app.model_rows.display and "l log" not in S.screen_text(app)


def test_a_state_event_changes_its_models_row_and_the_header_fields_only_for_the_primary() -> None:
    model = ViewState(clock=S.frozen_clock, connected=True)
    model.apply_status(S.several(two(), "qwen3-coder"))
    model.apply_state({"state": "stopping", "reason": "stopping Gemma 3 27B", "model": "gemma3"})
    assert [r.state for r in model.running] == ["ready", "stopping"] and model.state == "ready"
    model.apply_state({"state": "loading", "reason": "reloading", "model": "qwen3-coder"})
    assert [r.state for r in model.running] == ["loading", "stopping"] and model.state == "loading"
    old = ViewState(clock=S.frozen_clock, connected=True)  # a one-model daemon: every event is its model's
    old.apply_status(S.status("ready", S.MODELS[0]))
    old.apply_state({"state": "loading", "profile": "gemma3"})
    assert old.state == "loading"


def test_a_row_field_that_makes_no_sense_is_left_out_and_the_rest_of_the_row_kept() -> None:
    model = ViewState(clock=S.frozen_clock, connected=True)
    broken = {**S.running_model("gemma3", measured=36.0), "container": "not a container", "speed": [1]}
    model.apply_status(S.several([S.running_model("qwen3-coder"), broken, {"id": 7, "state": {}}], None))
    coder, gemma, odd = model.running
    assert (gemma.id, gemma.state, gemma.gpus) == ("gemma3", "ready", "1")
    assert gemma.container is None and gemma.speed is None
    assert coder.container is not None and (odd.id, odd.state) == ("7", "stopped")


async def test_a_state_event_for_another_model_changes_its_row_not_the_header() -> None:
    app, client = make(two())
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        client.status["models"][1]["state"] = "stopping"  # what the daemon's next status says
        await client.live.put(S.envelope(70, "state", {"state": "stopping", "reason": "stopping Gemma 3 27B",
                                                       "hint": None, "model": "gemma3", "profile": "gemma3"}))
        await pilot.pause(0.2)
        text = S.screen_text(app)
        assert "◑ stopping" in row_of(text, "gemma3")
        assert text.splitlines()[0].startswith(" llm-mcp ● ready  Qwen3 Coder 30B")


async def test_l_cycles_the_log_from_all_models_tagged_to_each_model_alone_and_back() -> None:
    app, client = make(two(), lines=MIXED_LOG)
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        log = app.log_view
        text = S.screen_text(app)
        assert "l log" in text.splitlines()[-1]  # the footer offers the key
        assert "╭─ log · all " in text
        assert "qwen3-coder 0.00.012.311 I coder says hello" in text
        assert "gemma3      0.00.013.120 I gemma says hello" in text
        assert "            --- a note about no model ---" in text  # no model: no tag, aligned
        await pilot.press("l")
        text = S.screen_text(app)
        assert log.source == "qwen3-coder" and "╭─ log · qwen3-coder " in text
        assert log.visible_texts() == ["0.00.012.311 I coder says hello", "0.06.381.120 I coder again"]
        assert "│0.00.012.311 I coder says hello" in text  # one model: no tags
        await pilot.press("l")
        assert log.source == "gemma3" and log.visible_texts() == ["0.00.013.120 I gemma says hello"]
        await client.live.put(S.envelope(80, "log", S.model_line(9, "gemma3", "0.09.000.000 I gemma later")))
        await client.live.put(S.envelope(81, "log", S.model_line(10, "qwen3-coder", "0.09.000.001 I coder")))
        await pilot.pause(0.3)
        assert log.visible_texts()[-1] == "0.09.000.000 I gemma later"
        await pilot.press("l")
        assert log.source is None and len(log.visible_texts()) == 6
        assert "╭─ log · all " in S.screen_text(app)


async def test_the_log_tags_only_when_a_second_model_prints_and_l_hides_from_the_footer_until_then() -> None:
    lines = [S.model_line(1, "qwen3-coder", "0.00.012.311 I coder says hello")]
    app, client = make(three()[:1], lines=lines)
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "│0.00.012.311 I coder says hello" in text and "╭─ log " in text and "log · all" not in text
        assert "l log" not in text.splitlines()[-1]
        await client.live.put(S.envelope(80, "log", S.model_line(2, "gemma3", "0.00.000.100 I gemma starts")))
        await pilot.pause(0.3)
        text = S.screen_text(app)
        assert "qwen3-coder 0.00.012.311 I coder says hello" in text
        assert "gemma3      0.00.000.100 I gemma starts" in text
        assert "l log" in text.splitlines()[-1] and "log · all" in text


@BOTH
async def test_the_picker_says_where_each_profile_would_run_and_what_it_would_replace(
        size: tuple[int, int]) -> None:
    app, client = make(two())
    async with app.run_test(size=size) as pilot:
        await settled(pilot, client)
        await pilot.press("m")
        assert isinstance(app.screen, PickerScreen)
        await pilot.pause()
        text = S.screen_text(app)
        gpt = next(line for line in text.splitlines() if "gpt-oss 120B" in line)
        embed = next(line for line in text.splitlines() if "Nomic Embed v2" in line)
        coder = next(line for line in text.splitlines() if "Qwen3 Coder 30B " in line and " 1 " in line)
        assert "●" in coder and "running" in coder
        if size == LARGE:
            assert "local · all GPUs" in gpt and "replaces qwen3-coder, gemma3" in gpt
            assert "cpu-box · CPU" in embed and "runs beside qwen3-coder, gemma3" in embed
        else:
            assert "replaces 2" in gpt and "beside" in embed
        await pilot.press("down")  # the highlighted profile's line says it in full
        await pilot.pause()
        text = S.screen_text(app)
        assert "runs on local · all GPUs · replaces qwen3-coder, gemma3" in text
        await pilot.press("down", "down")
        await pilot.pause()
        assert "runs on cpu-box · CPU · runs beside qwen3-coder, gemma3" in S.screen_text(app)


async def test_a_switch_in_flight_names_the_models_it_stops() -> None:
    app, client = make(two())
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        running = S.job("gpt-oss", "gpt-oss 120B", phase="stopping_previous",
                        stops=["qwen3-coder", "gemma3"], engine="local")
        await client.live.put(S.envelope(60, "job", running))
        await pilot.pause(0.3)
        assert "switching to gpt-oss 120B (stops Qwen3 Coder 30B, Gemma 3 27B)" in S.screen_text(app)


async def test_a_forced_load_that_does_not_fit_says_which_models_it_stops_first() -> None:
    def refuse(method: str, params: dict[str, Any]) -> Any:
        if method == "switch" and not params.get("force"):
            raise S.wont_fit_error("gpt-oss")
        return None

    app, client = make(two(), on_call=refuse)
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        await pilot.press("m", "2")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen)
        question = app.screen.question
        assert "Nothing was stopped: Qwen3 Coder 30B, Gemma 3 27B keep running." in question
        assert question.endswith("after Qwen3 Coder 30B, Gemma 3 27B have been stopped.")


async def test_s_with_several_running_asks_which_then_unloads_only_that_one() -> None:
    app, client = make(two())
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, StopPickerScreen)
        text = S.screen_text(app)
        assert "Stop which model?" in text and "Qwen3 Coder 30B ★" in text and "local · GPU 1" in text
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Stop Gemma 3 27B?")
        assert "Qwen3 Coder 30B keeps serving." in app.screen.question
        await pilot.press("y")
        await pilot.pause(0.2)
        assert calls(client, "unload") == [{"model": "gemma3", "force": False, "wait": False}]
        assert calls(client, "stop") == []
        text = S.screen_text(app)
        assert "╭─ stop " in text and "■ stopping Gemma 3 27B" in text  # the unload job's progress
        # the daemon lists it in `jobs` (status.job is the primary's): a status refresh keeps it shown
        client.status["jobs"] = [{**app.model.job, "phase": "stopping"}] if app.model.job else []
        await client.live.put(S.envelope(90, "state", {"state": "stopping", "model": "gemma3"}))
        await pilot.pause(0.3)
        assert len(calls(client, "status")) >= 3
        assert "■ stopping Gemma 3 27B  · stopping" in S.screen_text(app)


async def test_s_then_a_stops_every_model_and_escape_stops_none() -> None:
    app, client = make(two())
    async with app.run_test(size=SMALL) as pilot:
        await settled(pilot, client)
        await pilot.press("s", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, StopPickerScreen | ConfirmScreen)
        await pilot.press("s", "a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Stop every model (Qwen3 Coder 30B, Gemma 3 27B)?")
        await pilot.press("y")
        await pilot.pause(0.2)
        assert calls(client, "stop") == [{"force": False, "wait": False}] and calls(client, "unload") == []


async def test_s_with_one_model_of_a_several_model_daemon_unloads_it() -> None:
    app, client = make(three()[:1])
    async with app.run_test(size=LARGE) as pilot:
        await settled(pilot, client)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Stop Qwen3 Coder 30B?")
        await pilot.press("y")
        await pilot.pause(0.2)
        assert calls(client, "unload") == [{"model": "qwen3-coder", "force": False, "wait": False}]


# ---- the model endpoint ([proxy]): requests, ttl countdown, polling -----------------------

SERVED = {"address": "127.0.0.1:8090", "error": None, "url": "http://127.0.0.1:8090/v1"}


def test_the_ttl_counts_down_from_the_last_status_and_pauses_while_requests_run() -> None:
    now = [1000.0]
    view = ViewState(clock=lambda: now[0], connected=True)
    row = {**S.running_model("qwen3-coder"), "ttl": {"seconds": 300.0, "remaining": 100.0}}
    view.apply_status({**S.several([row], "qwen3-coder"), "proxy": SERVED})
    now[0] += 30
    assert view.ttl_left(view.running[0]) == 70.0
    now[0] += 500
    assert view.ttl_left(view.running[0]) == 0.0
    paused = {**row, "ttl": {"seconds": 300.0, "remaining": None}, "requests": {"in_flight": 1, "queued": 0}}
    view.apply_status(S.several([paused], "qwen3-coder"))
    assert view.ttl_left(view.running[0]) is None
    assert view.wants_polling  # a ttl: the countdown needs fresh answers
    view.apply_status(S.several([S.running_model("qwen3-coder")], "qwen3-coder"))
    assert not view.wants_polling and view.endpoint_url is None


async def test_while_the_endpoint_serves_the_monitor_polls_status_for_request_counts() -> None:
    rows = two()
    rows[0] = {**rows[0], "requests": {"in_flight": 2, "queued": 1}}
    app, client = make(rows)
    client.status = {**client.status, "proxy": SERVED}
    async with app.run_test(size=SMALL) as pilot:
        await settled(pilot, client)
        text = S.screen_text(app)
        assert "endpoint http://127.0.0.1:8090/v1" in text.splitlines()[1]
        assert "⇅2 +1q" in row_of(text, "qwen3-coder")
        before = len(calls(client, "status"))
        client.status["models"][0]["requests"] = {"in_flight": 0, "queued": 0}
        await wait_for(pilot, lambda: len(calls(client, "status")) > before + 1, 5, "a poll")
        await pilot.pause()
        assert "⇅" not in S.screen_text(app)


async def test_without_the_endpoint_the_monitor_does_not_poll() -> None:
    app, client = make(two())
    async with app.run_test(size=SMALL) as pilot:
        await settled(pilot, client)
        before = len(calls(client, "status"))
        await pilot.pause(2.5)
        assert len(calls(client, "status")) == before
        assert "endpoint" not in S.screen_text(app)
