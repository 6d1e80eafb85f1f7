"""`llm-mcp models | status | switch | logs | stop` as a user runs them: real processes, real daemon."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from llm_mcp.clients.cli import build_parser
from tests.conftest import FAKE_PROFILES, SIDE_BY_SIDE, Setup
from tests.daemons import SLOW_AND_BROKEN, Daemons, cli

pytestmark = [pytest.mark.docker]



@pytest.fixture
def fakes(setup: Setup, daemons: Daemons) -> Setup:
    setup.write(FAKE_PROFILES + SLOW_AND_BROKEN)
    return setup


def _ok(done: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    return done


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_documents_every_command_and_the_exit_codes() -> None:
    text = build_parser().format_help()
    for command in ("models", "status", "ps", "switch", "logs", "stop", "check", "daemon"):
        assert command in text
    for code in ("0  ok", "1  the operation failed", "2  usage error", "3  busy", "4  the daemon or Docker"):
        assert code in text


def test_models_lists_the_profiles_and_marks_the_running_one(fakes: Setup) -> None:
    table = _ok(cli(fakes, "models")).stdout
    assert "fake-a" in table and "Fake B" in table and "no model running" in table
    _ok(cli(fakes, "switch", "fake-a"))
    rows = {line[1:].split()[0]: line for line in _ok(cli(fakes, "models")).stdout.splitlines()[1:]
            if line.startswith(("*  ", "   "))}
    assert rows["fake-a"].startswith("*") and not rows["fake-b"].startswith("*")
    data = json.loads(_ok(cli(fakes, "models", "--json")).stdout)
    assert {m["id"]: m["current"] for m in data["models"]} == {"fake-a": True, "fake-b": False, "slow": False,
                                                              "broken": False}


def test_switch_prints_phases_then_ready_and_status_tells_the_story(fakes: Setup) -> None:
    done = _ok(cli(fakes, "switch", "fake-a"))
    lines = done.stdout.strip().splitlines()
    assert any("starting" in ln for ln in lines) and any("loading" in ln for ln in lines)
    assert lines[-1].startswith("Fake A is ready (loaded in")
    assert "\r" not in done.stdout  # not a TTY: plain lines
    status = _ok(cli(fakes, "status")).stdout
    for expected in ("state:      ready", "model:      Fake A [fake-a]", "uptime:", "health:     ok",
                     "offload:", "last:       switch to Fake A: ready"):
        assert expected in status, status
    data = json.loads(_ok(cli(fakes, "status", "--json")).stdout)
    assert data["state"] == "ready" and data["container"]["id"] and data["speed"]["expected_tps"] == 100
    again = _ok(cli(fakes, "switch", "fake-a", "--json"))
    assert json.loads(again.stdout)["detail"] == "already loaded"


def test_switch_to_an_unknown_model_is_exit_2_with_the_valid_ids(fakes: Setup) -> None:
    done = _ok(cli(fakes, "switch", "fake-c"), 2)
    line = _one_error_line(done)
    assert "unknown model 'fake-c'" in line and "fake-a, fake-b, slow, broken" in line
    assert done.stdout == ""
    as_json = json.loads(_ok(cli(fakes, "switch", "fake-c", "--json"), 2).stdout)
    assert as_json["error"]["reason"] == "unknown_model" and "fake-a" in as_json["error"]["valid"]


def test_a_failed_switch_is_exit_1_with_reason_hint_rollback_and_log_lines(fakes: Setup) -> None:
    _ok(cli(fakes, "switch", "fake-b"))
    done = _ok(cli(fakes, "switch", "broken"), 1)
    out = done.stdout
    assert "switch to Broken failed:" in out
    assert "hint: " in out
    assert "the previous model (fake-b) was restored" in out
    assert "the log lines that say why:" in out and "GGML_ASSERT" in out
    job = json.loads(_ok(cli(fakes, "switch", "broken", "--json"), 1).stdout)
    assert job["result"] == "failed" and job["reason"] and job["restored"] is True and job["log_lines"]
    no_rollback = _ok(cli(fakes, "switch", "broken", "--no-rollback"), 1).stdout
    assert "rollback was off" in no_rollback or "NOT restored" in no_rollback
    assert json.loads(_ok(cli(fakes, "status", "--json")).stdout)["state"] == "failed"


def test_busy_is_exit_3_and_force_replaces_the_switch(fakes: Setup) -> None:
    started = json.loads(_ok(cli(fakes, "switch", "slow", "--no-wait", "--json")).stdout)
    assert started["done"] is False and started["id"].startswith("job-")
    done = _ok(cli(fakes, "switch", "fake-a"), 3)
    line = _one_error_line(done)
    assert "busy" in line and "--force" in line and started["id"] in line
    status = _ok(cli(fakes, "status")).stdout
    assert "switching:  Slow:" in status
    waited = _ok(cli(fakes, "switch", "slow", "--timeout", "0.5"), 1)
    assert "goes on in the daemon" in waited.stderr and started["id"] in waited.stderr
    _ok(cli(fakes, "switch", "fake-a", "--force"))
    assert json.loads(_ok(cli(fakes, "status", "--json")).stdout)["profile"]["id"] == "fake-a"


def test_stop_stops_the_model_and_the_daemon_stays(fakes: Setup, daemons: Daemons) -> None:
    _ok(cli(fakes, "switch", "fake-a"))
    assert "the model is stopped" in _ok(cli(fakes, "stop")).stdout
    assert fakes.containers() == []
    assert json.loads(_ok(cli(fakes, "status", "--json")).stdout)["state"] == "stopped"
    assert len(daemons.pids()) == 1


def test_logs_tail_grep_run_and_json(fakes: Setup) -> None:
    _ok(cli(fakes, "switch", "fake-a"))
    _ok(cli(fakes, "switch", "fake-b"))
    tail = _ok(cli(fakes, "logs", "-n", "5")).stdout.splitlines()
    assert 0 < len(tail) <= 5
    everything = _ok(cli(fakes, "logs", "-n", "500")).stdout
    assert "--- switching to Fake A ---" in everything and "--- switching to Fake B ---" in everything
    grep = _ok(cli(fakes, "logs", "-n", "500", "--grep", "LISTENING ON")).stdout.splitlines()
    assert len(grep) == 2 and all("listening on" in ln for ln in grep)
    current = json.loads(_ok(cli(fakes, "logs", "-n", "500", "--run", "current", "--json")).stdout)
    assert current["lines"] and len({ln["run"] for ln in current["lines"]}) == 1
    previous = json.loads(_ok(cli(fakes, "logs", "-n", "500", "--run", "previous", "--json")).stdout)
    assert previous["lines"] and previous["lines"][0]["run"] != current["lines"][0]["run"]
    bad = _ok(cli(fakes, "logs", "--grep", "("), 2)
    line = _one_error_line(bad)
    assert "--grep" in line and "not a valid regex" in line


def test_logs_follow_continues_across_a_switch(fakes: Setup) -> None:
    _ok(cli(fakes, "switch", "fake-a"))
    follower = subprocess.Popen([sys.executable, "-m", "llm_mcp", "logs", "-f", "-n", "1", "--json"],
                                env=fakes.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())  # the tail: the follower is subscribed now
        assert first["kind"] == "log"
        _ok(cli(fakes, "switch", "fake-b"))
        seen = []
        deadline = time.monotonic() + 30
        while not any("listening on" in ln["text"] and ln["run"] != first["run"] for ln in seen):
            assert time.monotonic() < deadline, seen
            seen.append(json.loads(follower.stdout.readline()))
        texts = [ln["text"] for ln in seen]
        assert "--- switching to Fake B ---" in texts
        assert len({ln["run"] for ln in seen if ln["kind"] == "log"}) >= 1
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=10)
    assert follower.returncode == 130 and "Traceback" not in err


def test_switch_on_a_terminal_redraws_one_progress_line(fakes: Setup) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llm_mcp", "switch", "fake-b"], env=fakes.env(),
                            stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None or select.select([controller], [], [], 0)[0]:
        assert time.monotonic() < deadline
        if select.select([controller], [], [], 0.1)[0]:
            try:
                output += os.read(controller, 4096)
            except OSError:
                break
    os.close(controller)
    assert proc.wait() == 0
    text = output.decode()
    assert "\r\x1b[2KFake B: " in text  # the line is redrawn in place
    assert text.count("\n") <= 2  # one progress line, then the outcome
    assert "Fake B is ready" in text


def test_a_broken_models_conf_names_file_line_and_key(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + "\n[bad]\nname = Bad\nmodel = x.gguf\nctx_size = lots\n")
    line_no = setup.config_path.read_text().splitlines().index("ctx_size = lots") + 1
    for args in (("models",), ("status",), ("switch", "fake-a")):  # no daemon yet: it cannot start
        done = _ok(cli(setup, *args), 2)
        line = _one_error_line(done)
        assert f"{setup.config_path}:{line_no}" in line and "ctx_size" in line, line
    setup.write(FAKE_PROFILES)
    _ok(cli(setup, "status"))  # a daemon runs now; then the file breaks under it
    setup.write(FAKE_PROFILES + "\n[bad]\nname = Bad\nmodel = x.gguf\nctx_size = lots\n")
    for args in (("models",), ("switch", "fake-a")):
        line = _one_error_line(_ok(cli(setup, *args), 2))
        assert f"{setup.config_path}:{line_no}" in line and "ctx_size" in line, line


def test_no_daemon_possible_is_exit_4_in_one_line(fakes: Setup) -> None:
    env = {**fakes.env(), "LLM_MCP_SOCKET": "/proc/llm-mcp-cannot-live-here/daemon.sock"}
    done = _ok(cli(fakes, "status", env=env), 4)
    assert "daemon" in _one_error_line(done)


def test_ps_shows_each_running_model_and_stop_id_unloads_one(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + SIDE_BY_SIDE)
    nothing = _ok(cli(setup, "ps")).stdout
    assert nothing.startswith("nothing is running") and len(nothing.splitlines()) == 1
    _ok(cli(setup, "switch", "side-a"))
    _ok(cli(setup, "switch", "side-b"))
    lines = _ok(cli(setup, "ps")).stdout.splitlines()
    assert lines[0].split() == ["ID", "ENGINE", "GPUS", "STATE", "MEMORY", "REQ", "TTL", "SERVER", "UPTIME"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"side-a", "side-b"} and max(map(len, lines)) <= 80
    assert rows["side-a"][1:4] == rows["side-b"][1:4] == ["local", "none", "ready"]
    endpoints = {next(c for c in row if c.startswith("127.0.0.1:")) for row in rows.values()}
    assert len(endpoints) == 2
    listed = json.loads(_ok(cli(setup, "ps", "--json")).stdout)
    assert sorted(m["id"] for m in listed) == ["side-a", "side-b"]
    assert all(m["state"] == "ready" for m in listed)
    assert "models:     2 (2 ready)" in _ok(cli(setup, "status")).stdout
    assert len(setup.containers()) == 2

    stopped = _ok(cli(setup, "stop", "side-a")).stdout
    assert "Side A is stopped; the other models keep serving" in stopped
    assert [line.split()[0] for line in _ok(cli(setup, "ps")).stdout.splitlines()[1:]] == ["side-b"]
    assert len(setup.containers()) == 1
    again = _one_error_line(_ok(cli(setup, "stop", "side-a"), 1))
    assert "side-a" in again and "not running" in again and "side-b" in again
    unknown = _one_error_line(_ok(cli(setup, "stop", "nope"), 1))
    assert "'nope' is not running" in unknown and "side-b" in unknown

    _ok(cli(setup, "stop"))
    assert _ok(cli(setup, "ps")).stdout.startswith("nothing is running") and setup.containers() == []


def test_a_switch_says_which_running_model_it_replaced(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + SIDE_BY_SIDE)
    _ok(cli(setup, "switch", "side-a"))
    _ok(cli(setup, "switch", "fake-a"))
    models = json.loads(_ok(cli(setup, "models", "--json")).stdout)["models"]
    by_id = {m["id"]: m for m in models}
    assert by_id["fake-b"]["would_replace"] == ["fake-a"] and by_id["side-b"]["would_replace"] == []
    table = _ok(cli(setup, "models")).stdout.splitlines()
    assert "WHERE" in table[0] and "REPLACES" in table[0]
    fake_b = next(line for line in table if line[3:].startswith("fake-b "))
    assert fake_b.split()[-1] == "fake-a" and "local/all" in fake_b
    outcome = _ok(cli(setup, "switch", "fake-b")).stdout.strip().splitlines()[-1]
    assert outcome.startswith("Fake B is ready (loaded in") and outcome.endswith("; it replaced fake-a")
    assert sorted(m["id"] for m in json.loads(_ok(cli(setup, "ps", "--json")).stdout)) == ["fake-b", "side-a"]
