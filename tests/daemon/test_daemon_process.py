"""`llm-mcp daemon` as a process: one per socket, private socket, clean SIGTERM, adoption."""

from __future__ import annotations

import json
import os
import signal
import stat
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


async def _call(d: Daemons, method: str, **params: object) -> dict[str, object]:
    async with DaemonClient(d.socket, autostart=False) as client:
        with anyio.fail_after(60):
            result: dict[str, object] = await client.call(method, **params)
            return result


async def test_the_socket_is_mode_0600_and_the_daemon_logs_to_its_state_dir(
        setup: Setup, daemons: Daemons) -> None:
    daemons.start()
    mode = os.stat(daemons.socket).st_mode
    assert stat.S_ISSOCK(mode) and mode & 0o777 == 0o600
    log = setup.state_dir / "daemon.log"
    deadline = time.monotonic() + 10
    while "listening on" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


async def test_a_second_daemon_on_the_same_socket_exits_0_saying_it_is_already_running(
        setup: Setup, daemons: Daemons) -> None:
    first = daemons.start()
    done = cli(setup, "daemon", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stderr and f"pid {first.pid}" in done.stderr
    hello = await _call(daemons, "hello")
    assert hello["pid"] == first.pid
    assert daemons.pids() == [first.pid]


RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import anyio
    from llm_mcp.clients.client import DaemonClient

    sock, cfg, ready, go = (Path(a) for a in sys.argv[1:5])

    async def main() -> None:
        async with DaemonClient(sock, config_path=cfg, start_timeout=60) as client:
            await client.call("status", gpu=False)
            print(json.dumps(client.hello))

    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    anyio.run(main)
""")


async def test_ten_clients_starting_at_once_with_no_daemon_end_with_exactly_one(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    go = tmp_path / "go"
    racers = []
    for i in range(10):
        ready = tmp_path / f"ready-{i}"
        racers.append((ready, subprocess.Popen(
            [sys.executable, str(script), str(daemons.socket), str(setup.config_path), str(ready), str(go)],
            env=setup.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in racers):  # every racer imported and waiting
        assert time.monotonic() < deadline, "racers did not get ready"
        time.sleep(0.01)
    assert not answers(daemons.socket)
    go.touch()
    hellos = []
    for _, proc in racers:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        hellos.append(json.loads(out))
    pids = {hello["pid"] for hello in hellos}
    assert len(pids) == 1, hellos
    deadline = time.monotonic() + 20
    while daemons.pids() != list(pids):  # the losers of the lock race exit on their own
        assert time.monotonic() < deadline, (daemons.pids(), pids)
        time.sleep(0.05)


async def test_sigterm_leaves_the_model_running_and_the_next_daemon_adopts_it(
        setup: Setup, daemons: Daemons) -> None:
    first = daemons.start()
    job = await _call(daemons, "switch", model="fake-a", wait=True, timeout=60)
    assert job["result"] == "ready", job
    before = await _call(daemons, "status", gpu=False)
    container = before["container"]
    assert isinstance(container, dict)

    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0, daemons.stderr(first)
    assert not daemons.socket.exists()
    inspect = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}",
                              container["id"]], capture_output=True, text=True, check=True).stdout.split()
    assert inspect[0] == "true"
    assert "Traceback" not in daemons.stderr(first)

    second = daemons.start()
    deadline = time.monotonic() + 30
    while (after := await _call(daemons, "status", gpu=False))["state"] != "ready":
        assert time.monotonic() < deadline, after
        await anyio.sleep(0.05)
    assert after["container"] == {**container, "uptime": after["container"]["uptime"]}  # type: ignore[index]
    assert after["profile"]["id"] == "fake-a"  # type: ignore[index]
    assert after["job"] is None  # a ready container is adopted at once: no job a switch would wait for
    still = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container["id"]],
                           capture_output=True, text=True, check=True).stdout.split()
    assert still == inspect[1:]  # the same container, never restarted: no reload
    assert len(setup.containers()) == 1
    assert daemons.pids() == [second.pid]
