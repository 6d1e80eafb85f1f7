"""Every parameter of every method is checked by its schema before use: no input ends the daemon."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from llm_mcp import protocol
from tests.conftest import Setup
from tests.daemons import Daemons, Raw, in_process_daemon, socket_of

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

VALID_REQUIRED = {"switch": {"model": "fake-a"}, "unload": {"model": "fake-a"}, "job": {"id": "job-0-0"},
                  "bench": {"models": ["fake-a"]}}
WRONG_TYPE = {"integer": "12", "number": "1.5", "boolean": "yes", "string": 5, "array": "log"}


def _bad_cases(method: str) -> list[tuple[str, dict[str, Any], str]]:
    """(what, params, the parameter the error must name), derived from the method's own schema."""
    model = protocol.PARAMS[method]
    base = VALID_REQUIRED.get(method, {})
    cases: list[tuple[str, dict[str, Any], str]] = [("an unknown parameter", {**base, "bogus": 1}, "bogus")]
    properties = model.model_json_schema()["properties"]
    for name, schema in properties.items():
        kind = schema.get("type", "string")
        cases.append((f"{name} of the wrong type", {**base, name: WRONG_TYPE[kind]}, name))
        if kind in ("integer", "number"):
            cases.append((f"{name} a boolean", {**base, name: True}, name))
        if "minimum" in schema:
            cases.append((f"{name} below its range", {**base, name: schema["minimum"] - 1}, name))
        if "maximum" in schema:
            cases.append((f"{name} above its range", {**base, name: schema["maximum"] * 10**6}, name))
        if "maxLength" in schema:
            cases.append((f"{name} too long", {**base, name: "x" * (schema["maxLength"] + 1)}, name))
        if "enum" in schema:
            cases.append((f"{name} not one of its values", {**base, name: "nonsense"}, name))
    for name in model.model_json_schema().get("required", []):
        cases.append((f"without {name}", {k: v for k, v in base.items() if k != name}, name))
    return cases


async def _serving(client: Raw) -> None:
    with anyio.fail_after(5):
        reply = await client.call("status", {"gpu": False})
    assert reply["result"]["state"] == "stopped", reply


def test_the_method_table_and_the_protocol_list_the_same_methods(setup: Setup) -> None:
    from llm_mcp.daemon.server import Daemon
    from tests.conftest import make_core

    daemon = Daemon(make_core(setup), socket_of(setup))
    assert tuple(daemon.methods) == protocol.METHODS
    assert all(entry.params is protocol.PARAMS[name] for name, entry in daemon.methods.items())


@pytest.mark.parametrize("method", protocol.METHODS)
async def test_bad_types_ranges_and_unknown_params_get_invalid_params_naming_them(
        setup: Setup, method: str) -> None:
    async with in_process_daemon(setup) as daemon:
        offender = await Raw.open(daemon.socket_path)
        bystander = await Raw.open(daemon.socket_path)
        for what, params, name in _bad_cases(method):
            with anyio.fail_after(5):
                reply = await offender.call(method, params)
            error = reply.get("error")
            assert error is not None, (what, reply)
            assert error["code"] == protocol.INVALID_PARAMS, (what, error)
            assert f"'{name}'" in error["message"] and error["data"]["param"] == name, (what, error)
            assert error["data"]["valid"], (what, error)
            await _serving(bystander)
        await _serving(offender)
        assert daemon.core.current_job is None  # nothing was started by a rejected request
        assert daemon.core.bus.subscriber_count == 0
        await offender.aclose()
        await bystander.aclose()


@pytest.mark.parametrize(("params", "range_text"), [
    ({"capacity": 0}, "1..100000"), ({"capacity": -1}, "1..100000"), ({"capacity": 10**12}, "1..100000"),
    ({"lines": -1}, "0..10000"), ({"timeout": 86401}, "0..86400"),
])
async def test_the_error_message_says_the_valid_range(setup: Setup, params: dict[str, Any],
                                                      range_text: str) -> None:
    method = {"capacity": "subscribe", "lines": "tail_logs", "timeout": "stop"}[next(iter(params))]
    async with in_process_daemon(setup) as daemon:
        client = await Raw.open(daemon.socket_path)
        reply = await client.call(method, params)
        assert reply["error"]["code"] == protocol.INVALID_PARAMS
        assert range_text in reply["error"]["message"], reply
        await client.aclose()


async def test_null_still_means_the_default(setup: Setup) -> None:
    async with in_process_daemon(setup) as daemon:
        client = await Raw.open(daemon.socket_path)
        reply = await client.call("tail_logs", {"lines": None, "filter": None, "run": None})
        assert reply["result"]["run"] == "all", reply
        await client.aclose()


@pytest.mark.parametrize("capacity", [0, -1, 10**12])
async def test_a_bad_subscribe_capacity_is_refused_and_the_next_event_finds_the_daemon_alive(
        setup: Setup, daemons: Daemons, capacity: int) -> None:
    proc = daemons.start()
    client = await Raw.open(daemons.socket)
    try:
        reply = await client.call("subscribe", {"topics": ["job", "state"], "capacity": capacity})
        assert reply["error"]["code"] == protocol.INVALID_PARAMS, reply
        assert "capacity" in reply["error"]["message"]
        good = await client.call("subscribe", {"topics": ["job"], "capacity": 1})
        assert good["result"] == {"subscribed": ["job"]}
        other = await Raw.open(daemons.socket)
        stop = await other.call("stop", {"wait": True, "timeout": 30})  # a real job: real events
        assert stop["result"]["result"] == "stopped", stop
        with anyio.fail_after(10):
            event = await client.receive()
        assert event["method"] == "event" and event["params"]["topic"] == "job"
        with anyio.fail_after(5):
            status = await other.call("status", {"gpu": False})
        assert status["result"]["state"] == "stopped"
        assert proc.poll() is None, daemons.stderr(proc)
        await other.aclose()
    finally:
        await client.aclose()


async def test_running_out_of_file_descriptors_does_not_end_the_daemon(
        setup: Setup, daemons: Daemons, tmp_path: Path) -> None:
    # A daemon with few descriptors, and a client that opens more connections than it has left.
    limit = 64
    with (setup.root / "daemon-0.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
             f"({limit}, {limit})); from llm_mcp.clients.cli import main; sys.exit(main(sys.argv[1:]))",
             "daemon", "--socket", str(daemons.socket)], env=setup.env(), stdout=subprocess.DEVNULL,
            stderr=err)
    daemons.procs.append(proc)
    with anyio.fail_after(30):
        while True:
            try:
                probe = await Raw.open(daemons.socket)
                break
            except OSError:
                assert proc.poll() is None, daemons.stderr(proc)
                await anyio.sleep(0.02)
    await _serving(probe)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft > 4 * limit
    flood: list[socket.socket] = []
    try:
        for _ in range(2 * limit):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemons.socket))  # the backlog takes them even when accept cannot
            flood.append(sock)
        log = setup.state_dir / "daemon.log"
        with anyio.fail_after(15):  # it runs out of descriptors, says so and backs off
            while "accept failed" not in log.read_text():
                assert proc.poll() is None, daemons.stderr(proc)
                await anyio.sleep(0.05)
        assert proc.poll() is None, daemons.stderr(proc)
    finally:
        for sock in flood:
            sock.close()
    fresh = None
    with anyio.fail_after(15):
        while fresh is None:
            try:
                fresh = await Raw.open(daemons.socket)
                await _serving(fresh)
            except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, json.JSONDecodeError):
                fresh = None
                await anyio.sleep(0.1)
    await _serving(probe)
    assert proc.poll() is None
    await fresh.aclose()
    await probe.aclose()
