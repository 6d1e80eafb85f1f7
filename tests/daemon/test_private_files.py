"""The daemon's files are private (0600 in 0700), never written through a symlink, and clients
talk only to a socket of their own user."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import anyio
import pytest

from llm_mcp.clients.client import DaemonClient, UnsafeSocket, check_socket
from tests.conftest import Setup
from tests.daemons import Daemons, cli

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

NOBODY = pwd.getpwnam("nobody").pw_uid


def _mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    return victim


def _untouched(victim: Path) -> None:
    assert victim.read_text() == "precious\n" and _mode(victim) == 0o644


async def test_every_file_the_daemon_and_a_client_create_is_0600_in_a_0700_dir(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o755)
    env = {**setup.env(), "XDG_RUNTIME_DIR": str(runtime)}
    del env["LLM_MCP_SOCKET"]  # the default socket: $XDG_RUNTIME_DIR/llm-mcp/daemon.sock
    old = os.umask(0o022)
    try:
        done = cli(setup, "status", env=env, timeout=60)  # the client starts the daemon
    finally:
        os.umask(old)
    try:
        assert done.returncode == 0, done.stderr
        socket_dir = runtime / "llm-mcp"
        assert _mode(socket_dir) == 0o700
        assert stat.S_ISSOCK(os.lstat(socket_dir / "daemon.sock").st_mode)
        assert _mode(socket_dir / "daemon.sock") == 0o600
        assert _mode(socket_dir / "daemon.sock.lock") == 0o600
        state = setup.state_dir
        assert _mode(state) == 0o700
        for name in ("daemon.log", "daemon-start.log", f"instance-{setup.instance}.lock"):
            assert _mode(state / name) == 0o600, name
    finally:
        cli(setup, "stop", env=env, timeout=60)
        pid = (runtime / "llm-mcp" / "daemon.sock.lock").read_text().strip()
        if pid.isdigit():
            os.kill(int(pid), 15)


async def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    Path(f"{daemons.socket}.lock").symlink_to(victim)
    done = cli(setup, "daemon", timeout=30)
    assert done.returncode == 4, done.stderr
    assert "symlink" in done.stderr and "Traceback" not in done.stderr
    _untouched(victim)
    assert daemons.pids() == []


async def test_a_symlinked_daemon_log_is_refused_and_its_target_untouched(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    setup.state_dir.mkdir(mode=0o700)
    (setup.state_dir / "daemon.log").symlink_to(victim)
    done = cli(setup, "daemon", timeout=30)
    assert done.returncode == 4, done.stderr
    assert "daemon.log" in done.stderr and "symlink" in done.stderr and "Traceback" not in done.stderr
    _untouched(victim)


async def test_a_symlinked_instance_lock_is_refused_and_its_target_untouched(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    setup.state_dir.mkdir(mode=0o700)
    (setup.state_dir / f"instance-{setup.instance}.lock").symlink_to(victim)
    done = cli(setup, "daemon", timeout=30)
    assert done.returncode == 4, done.stderr
    assert "symlink" in done.stderr and "Traceback" not in done.stderr
    _untouched(victim)


async def test_a_state_dir_of_another_user_is_refused_and_left_as_it_was(
        setup: Setup, daemons: Daemons) -> None:
    setup.state_dir.mkdir(mode=0o755)
    setup.state_dir.chmod(0o755)
    os.chown(setup.state_dir, NOBODY, -1)
    done = cli(setup, "daemon", timeout=30)
    assert done.returncode == 4, done.stderr
    assert f"belongs to uid {NOBODY}" in done.stderr and "Traceback" not in done.stderr
    assert list(setup.state_dir.iterdir()) == [] and _mode(setup.state_dir) == 0o755


async def test_a_symlinked_daemon_start_log_stops_the_client_with_a_clear_error(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    setup.state_dir.mkdir(mode=0o700)
    (setup.state_dir / "daemon-start.log").symlink_to(victim)
    done = cli(setup, "status", timeout=60)
    assert done.returncode == 4, done.stderr
    assert "daemon-start.log" in done.stderr and "symlink" in done.stderr
    assert "Traceback" not in done.stderr
    _untouched(victim)


async def test_a_loose_state_dir_and_log_are_tightened(setup: Setup, daemons: Daemons) -> None:
    setup.state_dir.mkdir(mode=0o755)
    setup.state_dir.chmod(0o755)
    (setup.state_dir / "daemon.log").write_text("earlier\n")
    (setup.state_dir / "daemon.log").chmod(0o644)
    daemons.start()
    assert _mode(setup.state_dir) == 0o700
    assert _mode(setup.state_dir / "daemon.log") == 0o600
    assert (setup.state_dir / "daemon.log").read_text().startswith("earlier\n")  # appended, not truncated


async def test_a_socket_of_another_user_is_refused_by_the_client_with_a_clear_message(
        setup: Setup, daemons: Daemons) -> None:
    daemons.start()
    check_socket(daemons.socket)  # ours: fine
    os.chown(daemons.socket, NOBODY, -1)  # as root we could still connect: the check must refuse
    with pytest.raises(UnsafeSocket, match=f"belongs to uid {NOBODY}, not to you"):
        check_socket(daemons.socket)
    async with DaemonClient(daemons.socket, autostart=True, start_timeout=5) as client:
        with anyio.fail_after(10), pytest.raises(UnsafeSocket, match="another user's daemon"):
            await client.call("status", gpu=False)
    done = cli(setup, "status", timeout=30)
    assert done.returncode == 4, done.stderr
    assert f"uid {NOBODY}" in done.stderr and "Traceback" not in done.stderr


async def test_something_else_at_the_socket_path_is_refused_not_started_over(
        setup: Setup, daemons: Daemons) -> None:
    daemons.socket.write_text("not a socket\n")
    done = cli(setup, "status", timeout=30)
    assert done.returncode == 4, done.stderr
    assert "not a socket" in done.stderr
    assert daemons.socket.read_text() == "not a socket\n"
    assert daemons.pids() == []


@pytest.mark.parametrize("what", ["file", "symlink", "foreign socket"])
async def test_the_daemon_never_deletes_what_is_not_its_own_socket(
        setup: Setup, daemons: Daemons, tmp_path: Path, what: str) -> None:
    import socket

    victim = _victim(tmp_path)
    holder = None
    if what == "file":
        daemons.socket.write_text("precious\n")
    elif what == "symlink":
        daemons.socket.symlink_to(victim)
    else:
        holder = socket.socket(socket.AF_UNIX)
        holder.bind(str(daemons.socket))
        os.chown(daemons.socket, NOBODY, -1)
    try:
        done = cli(setup, "daemon", timeout=30)
        assert done.returncode == 4, done.stderr
        assert "refusing to replace it" in done.stderr and "Traceback" not in done.stderr
        assert os.path.lexists(daemons.socket)
        if what == "file":
            assert daemons.socket.read_text() == "precious\n"
        _untouched(victim)
    finally:
        if holder is not None:
            holder.close()
