"""One daemon drives an instance's containers, and a daemon that dies is replaced at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from llm_mcp.clients.client import DaemonClient
from tests.conftest import Setup
from tests.daemons import Daemons, answers, cli

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def _daemon(setup: Setup, sock: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "llm_mcp", "daemon", "--socket", str(sock)],
                                env=setup.env(), stdout=subprocess.DEVNULL, stderr=err)


async def test_a_second_daemon_for_the_same_instance_on_another_socket_exits_naming_the_owner(
        setup: Setup, daemons: Daemons) -> None:
    first = daemons.start()
    other = setup.root / "other.sock"
    err = setup.root / "other.err"
    second = _daemon(setup, other, err)
    try:
        assert second.wait(30) == 4, err.read_text()
        message = err.read_text()
        assert f"pid {first.pid}" in message and str(daemons.socket) in message, message
        assert "Traceback" not in message
        assert not answers(other)

        # A client on the other socket starts a daemon there, and is told the same.
        done = cli(setup, "status", env={**setup.env(), "LLM_MCP_SOCKET": str(other)}, timeout=60)
        assert done.returncode == 4, done.stderr
        assert f"pid {first.pid}" in done.stderr and "Traceback" not in done.stderr
        holder = json.loads((setup.state_dir / f"instance-{setup.instance}.lock").read_text())
        assert holder["pid"] == first.pid and holder["socket"] == str(daemons.socket)

        # Once the owner has gone, the instance is free for a daemon on any socket.
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        third = _daemon(setup, other, setup.root / "third.err")
        try:
            with anyio.fail_after(30):
                while not answers(other):
                    assert third.poll() is None, (setup.root / "third.err").read_text()
                    await anyio.sleep(0.02)
        finally:
            third.terminate()
            third.wait(30)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)


def _met_the_lock(state: Path, daemons: int) -> bool:
    """`daemons` started by clients have found the lock held (and waited, or gave up)."""
    start_log = state / "daemon-start.log"
    if not start_log.exists():
        return False
    text = start_log.read_text(errors="replace")
    return text.count("already running") + text.count("waiting up to") >= daemons


RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import anyio
    from llm_mcp.clients.client import DaemonClient

    sock, cfg, ready, go = (Path(a) for a in sys.argv[1:5])

    async def main() -> None:
        async with DaemonClient(sock, config_path=cfg, start_timeout=30) as client:
            status = await client.call("status", gpu=False)
            print(json.dumps({"at": time.time(), "pid": client.hello["pid"], "state": status["state"]}))

    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    anyio.run(main)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm-slow-exit", "sigkill"])
async def test_two_clients_restarting_a_dead_daemon_at_once_are_answered_within_2_s(
        setup: Setup, daemons: Daemons, tmp_path: Path, signum: int) -> None:
    old = daemons.start()
    async with DaemonClient(daemons.socket, autostart=False) as client:  # a daemon with work to leave
        assert (await client.call("switch", model="fake-a", wait=True, timeout=60))["result"] == "ready"
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    go = tmp_path / "go"
    racers = []
    for i in range(2):
        ready = tmp_path / f"ready-{i}"
        racers.append((ready, subprocess.Popen(
            [sys.executable, str(script), str(daemons.socket), str(setup.config_path), str(ready), str(go)],
            env=setup.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    with anyio.fail_after(60):
        while not all(ready.exists() for ready, _ in racers):  # both imported and waiting
            await anyio.sleep(0.01)

    old.send_signal(signum)
    with anyio.fail_after(30):
        # The clients come the moment the old daemon stops answering: while it still shuts down.
        while answers(daemons.socket):
            await anyio.sleep(0.001)
    if signum == signal.SIGTERM:
        # A shutdown that takes a while (a Docker call in flight finishing): the old daemon is held
        # still, with its locks, until the daemons the clients started have met its lock.
        old.send_signal(signal.SIGSTOP)
    go.touch()
    if signum == signal.SIGTERM:
        with anyio.fail_after(30):
            while not _met_the_lock(setup.state_dir, len(racers)):
                await anyio.sleep(0.01)
        old.send_signal(signal.SIGCONT)
    await anyio.to_thread.run_sync(old.wait, 30)
    died = time.time()

    results = []
    for _, proc in racers:
        out, err = await anyio.to_thread.run_sync(proc.communicate, None, 60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert {r["pid"] for r in results} != {old.pid} and len({r["pid"] for r in results}) == 1, results
    assert all(r["state"] in ("starting", "loading", "ready") for r in results), results  # adopting
    late = [round(r["at"] - died, 2) for r in results]
    print(f"answered {late} s after the old daemon died")
    assert max(late) <= 2.0, f"answered {late} s after the old daemon died"
    new_pid = results[0]["pid"]
    with anyio.fail_after(20):
        while daemons.pids() != [new_pid]:  # the spare daemon a racer started has gone
            await anyio.sleep(0.05)
    assert os.path.exists(daemons.socket)
