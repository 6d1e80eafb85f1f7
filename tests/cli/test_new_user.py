"""What a new user meets first: help, the default model, Docker being down, check's advice."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from llm_mcp.clients.cli import build_parser
from tests.conftest import FAKE_PROFILES, ROOT, Setup
from tests.daemons import Daemons, cli

pytestmark = [pytest.mark.docker]


def _ok(done: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    return done


@pytest.mark.parametrize("command", ["daemon", "serve"])
def test_daemon_and_serve_help_say_what_they_are(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]  # usage, then the description paragraph
    assert len(description) > 60 and "options:" not in description, text
    assert "exit codes:" in text


def test_switch_without_an_id_switches_to_the_default_profile(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES, defaults="default = fake-b")
    done = _ok(cli(setup, "switch"))
    assert done.stdout.strip().splitlines()[-1].startswith("Fake B is ready")
    assert json.loads(_ok(cli(setup, "status", "--json")).stdout)["profile"]["id"] == "fake-b"


def test_switch_without_an_id_and_no_default_is_a_usage_error(setup: Setup, daemons: Daemons) -> None:
    done = _ok(cli(setup, "switch"), 2)
    line = done.stderr.strip()
    assert "no model id given" in line and "default = ID" in line and str(setup.config_path) in line
    assert json.loads(_ok(cli(setup, "status", "--json")).stdout)["state"] == "stopped"


def test_status_is_exit_4_with_a_sentence_and_a_fix_when_docker_is_down(setup: Setup, daemons: Daemons,
                                                                         tmp_path: Path) -> None:
    gone = tmp_path / "no-docker-here.sock"
    env = {**setup.env(), "DOCKER_HOST": f"unix://{gone}"}  # the daemon it starts finds no engine
    done = _ok(cli(setup, "status", env=env), 4)
    assert "Docker is not running" in done.stdout and str(gone) in done.stdout, done.stdout
    assert "systemctl start docker" in done.stdout
    for raw in ("FileNotFoundError", "Connection aborted", "Errno", "('"):
        assert raw not in done.stdout + done.stderr
    as_json = _ok(cli(setup, "status", "--json", env=env), 4)
    assert json.loads(as_json.stdout)["state"]
    checked = cli(setup, "check", env=env).stdout
    assert f"error docker   Docker is not running: nothing listens at unix://{gone}" in checked, checked
    assert "FileNotFoundError" not in checked and "Connection aborted" not in checked


def test_check_prints_a_ready_to_paste_claude_code_registration(setup: Setup) -> None:
    socket = f"/tmp/llm-mcp-test-{uuid.uuid4().hex[:8]}.sock"
    env = {**setup.env(), "LLM_MCP_SOCKET": socket}
    text = cli(setup, "check", env=env).stdout
    line = text.strip().splitlines()[-1].strip()
    venv_llm_mcp = ROOT / ".venv" / "bin" / "llm-mcp"
    assert line == (f"claude mcp add --scope user llm -e LLM_MCP_SOCKET={socket} -e LLM_MCP_STATE_DIR="
                    f"{setup.state_dir} -- {venv_llm_mcp} --config {setup.config_path} serve"), text
    data = json.loads(cli(setup, "check", "--json", env=env).stdout)
    assert data["claude_code"]["command"] == line


def test_check_and_status_warn_about_a_host_other_than_loopback(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES, defaults="host = 0.0.0.0")
    line_no = setup.config_path.read_text().splitlines().index("host = 0.0.0.0") + 1
    checked = json.loads(cli(setup, "check", "--json").stdout)
    warning = next(c for c in checked["checks"] if c["check"] == "config" and c["level"] == "warn")
    assert warning["message"].startswith(f"{setup.config_path}:{line_no}: [defaults] host: 0.0.0.0 is not")
    assert warning["fix"] == f"$EDITOR +{line_no} {setup.config_path}"
    status = _ok(cli(setup, "status")).stdout
    assert f"warning:    {setup.config_path}:{line_no}: [defaults] host: 0.0.0.0 is not a loopback" in status
    as_json = json.loads(_ok(cli(setup, "status", "--json")).stdout)
    assert as_json["config_warnings"] == [warning["message"]]


def test_a_value_out_of_range_stops_every_command_with_file_line_key_and_range(setup: Setup,
                                                                                daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + "\n[huge]\nname = Huge\nmodel = tiny-a.gguf\nctx_size = 1" + "0" * 35 + "\n")
    line_no = len(setup.config_path.read_text().splitlines())
    for args in (("status",), ("check",)):
        done = cli(setup, *args)
        assert done.returncode in (1, 2)
        assert f"{setup.config_path}:{line_no}: [huge] ctx_size: " in done.stdout + done.stderr
        assert "must be between 1 and 16777216" in done.stdout + done.stderr
