"""Whatever arrives on the socket, the daemon answers with an error or hangs up, and keeps serving."""

from __future__ import annotations

import contextlib
import gc
import json
import random

import anyio
import pytest

from llm_mcp import protocol
from tests.conftest import Setup
from tests.daemons import Raw, in_process_daemon, socket_of

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture(autouse=True)
def _no_garbage_from_before() -> None:
    """Finalise what earlier tests on this worker left (docker-py leaks the socket of a failed
    connect) now: collected during a deeply nested request, its warning cannot even be
    formatted (RecursionError) and pytest fails this test for it."""
    gc.collect()


async def _still_serving(*clients: Raw) -> None:
    for client in clients:
        with anyio.fail_after(5):
            reply = await client.call("status", {"gpu": False})
        assert reply["result"]["state"] == "stopped", reply


MALFORMED: list[tuple[str, bytes, int]] = [
    ("not json", b"hello daemon", protocol.PARSE_ERROR),
    ("truncated json", b'{"jsonrpc": "2.0", "id": 1, "method": "sta', protocol.PARSE_ERROR),
    ("trailing garbage", b'{"jsonrpc": "2.0", "id": 1, "method": "status"}}', protocol.PARSE_ERROR),
    ("not utf-8", b"\xff\xfe\xfa{", protocol.PARSE_ERROR),
    ("a huge number", b"1" * 5000, protocol.PARSE_ERROR),
    ("deep nesting", b"[" * 200_000 + b"]" * 200_000, protocol.PARSE_ERROR),
    ("a string", b'"status"', protocol.INVALID_REQUEST),
    ("a number", b"42", protocol.INVALID_REQUEST),
    ("null", b"null", protocol.INVALID_REQUEST),
    ("an empty batch", b"[]", protocol.INVALID_REQUEST),
    ("a batch", b'[{"jsonrpc": "2.0", "id": 1, "method": "status"}]', protocol.INVALID_REQUEST),
    ("no jsonrpc member", b'{"id": 1, "method": "status"}', protocol.INVALID_REQUEST),
    ("missing method", b'{"jsonrpc": "2.0", "id": 1}', protocol.INVALID_REQUEST),
    ("method not a string", b'{"jsonrpc": "2.0", "id": 1, "method": 5}', protocol.INVALID_REQUEST),
    ("id an object", b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "status"}', protocol.INVALID_REQUEST),
    ("params an array", b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": [1]}',
     protocol.INVALID_PARAMS),
    ("unknown method", b'{"jsonrpc": "2.0", "id": 1, "method": "reboot"}', protocol.METHOD_NOT_FOUND),
]


def _request(method: str, params: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()


WRONG_PARAMS: list[tuple[str, bytes, int]] = [
    ("switch model a number", _request("switch", {"model": 5}), protocol.INVALID_PARAMS),
    ("switch without model", _request("switch", {}), protocol.INVALID_PARAMS),
    ("switch wait a string", _request("switch", {"model": "fake-a", "wait": "yes"}), protocol.INVALID_PARAMS),
    ("switch timeout a bool", _request("switch", {"model": "fake-a", "timeout": True}),
     protocol.INVALID_PARAMS),
    ("tail_logs lines a string", _request("tail_logs", {"lines": "ten"}), protocol.INVALID_PARAMS),
    ("tail_logs bad regex", _request("tail_logs", {"filter": "("}), protocol.INVALID_PARAMS),
    ("tail_logs bad run", _request("tail_logs", {"run": "yesterday"}), protocol.INVALID_PARAMS),
    ("job id a number", _request("job", {"id": 3}), protocol.INVALID_PARAMS),
    ("stop force a string", _request("stop", {"force": "yes"}), protocol.INVALID_PARAMS),
    ("subscribe topics a string", _request("subscribe", {"topics": "log"}), protocol.INVALID_PARAMS),
    ("subscribe unknown topic", _request("subscribe", {"topics": ["weather"]}), protocol.INVALID_PARAMS),
    ("hello from the future", _request("hello", {"protocol": 99}), protocol.PROTOCOL_MISMATCH),
    ("unknown model", _request("switch", {"model": "nope"}), protocol.UNKNOWN_MODEL),
    ("unknown job", _request("job", {"id": "job-0-0"}), protocol.NOT_FOUND),
]


@pytest.mark.parametrize(("what", "line", "code"), MALFORMED + WRONG_PARAMS,
                         ids=[case[0] for case in MALFORMED + WRONG_PARAMS])
async def test_each_bad_request_gets_its_error_and_both_connections_keep_working(
        setup: Setup, what: str, line: bytes, code: int) -> None:
    async with in_process_daemon(setup) as daemon:
        bystander = await Raw.open(daemon.socket_path)
        offender = await Raw.open(daemon.socket_path)
        await _still_serving(bystander)
        await offender.send(line + b"\n")
        with anyio.fail_after(5):
            reply = await offender.receive()
        assert reply["jsonrpc"] == "2.0"
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["message"]
        await _still_serving(bystander, offender)
        assert daemon.core.current_job is None  # nothing was started by a rejected request
        await offender.aclose()
        await bystander.aclose()


async def test_blank_lines_are_ignored(setup: Setup) -> None:
    async with in_process_daemon(setup) as daemon:
        client = await Raw.open(daemon.socket_path)
        await client.send(b"\n  \n\r\n")
        await _still_serving(client)


@pytest.mark.parametrize("seed", range(5))
async def test_random_bytes_get_errors_and_the_same_connection_still_works(setup: Setup, seed: int) -> None:
    rng = random.Random(seed)
    async with in_process_daemon(setup) as daemon:
        bystander = await Raw.open(daemon.socket_path)
        offender = await Raw.open(daemon.socket_path)
        noise = rng.randbytes(64 * 1024)
        expected = sum(1 for ln in (noise + b"\n").split(b"\n")[:-1] if ln.strip())
        await offender.send(noise + b"\n")
        errors = 0
        with anyio.fail_after(10):
            while errors < expected:
                reply = await offender.receive()
                assert "error" in reply and reply["id"] is None, reply
                errors += 1
        await _still_serving(bystander, offender)


@pytest.mark.parametrize("payload", ["bare", "json"])
async def test_a_10_mb_line_is_refused_and_closed_while_others_are_served(setup: Setup, payload: str) -> None:
    async with in_process_daemon(setup) as daemon:
        bystander = await Raw.open(daemon.socket_path)
        offender = await Raw.open(daemon.socket_path)
        big = b"x" * (10 << 20) if payload == "bare" else _request("status", {"pad": "x" * (10 << 20)})
        replies: list[dict[str, object]] = []

        async def flood() -> None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await offender.send(big + b"\n")  # the daemon may hang up mid-line

        async def read() -> None:
            try:
                while True:
                    replies.append(await offender.receive())
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                pass

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                tg.start_soon(read)
                await _still_serving(bystander)
        assert len(replies) <= 1
        if replies:
            error = replies[0]["error"]
            assert isinstance(error, dict) and error["code"] == protocol.INVALID_REQUEST
            assert str(protocol.MAX_LINE_BYTES) in str(error["message"])
        await _still_serving(bystander)
        await _still_serving(await Raw.open(daemon.socket_path))


async def test_a_client_that_vanishes_mid_request_costs_nothing(setup: Setup) -> None:
    async with in_process_daemon(setup) as daemon:
        for _ in range(20):
            gone = await Raw.open(daemon.socket_path)
            await gone.send(b'{"jsonrpc": "2.0", "id": 1, "meth')
            await gone.aclose()
        last = await Raw.open(daemon.socket_path)
        await _still_serving(last)
        await last.aclose()
        with anyio.fail_after(5):
            while daemon.clients:  # every half-sent request was dropped with its connection
                await anyio.sleep(0.01)


async def test_a_slow_subscriber_loses_events_not_the_daemon(setup: Setup) -> None:
    async with in_process_daemon(setup) as daemon:
        slow = await Raw.open(daemon.socket_path)
        reply = await slow.call("subscribe", {"topics": ["log"], "capacity": 8})
        assert reply["result"] == {"subscribed": ["log"]}
        other = await Raw.open(daemon.socket_path)
        for i in range(3000):  # ~6 MB of log events; the slow client reads none of them
            daemon.core.logbook.note(f"{i} " + "x" * 2000)
            if i % 50 == 0:
                await anyio.sleep(0)
        with anyio.fail_after(2):
            await _still_serving(other)
            tail = await other.call("tail_logs", {"lines": 1})
        assert tail["result"]["lines"][0]["text"].startswith("2999 ")
        sub = next(s for s in daemon.core.bus._subs if s.capacity == 8)
        assert sub.dropped > 0
        with anyio.fail_after(10):
            while True:  # once it reads, the slow client learns how much it missed
                event = await slow.receive()
                if event["params"]["dropped"] > 0:
                    break
        assert event["method"] == "event" and event["params"]["topic"] == "log"


async def test_the_socket_is_private_to_its_user(setup: Setup) -> None:
    import os
    import stat

    async with in_process_daemon(setup):
        mode = os.stat(socket_of(setup)).st_mode
        assert stat.S_ISSOCK(mode)
        assert mode & 0o777 == 0o600


async def test_subscribers_hanging_up_mid_stream_leave_the_daemon_serving(setup: Setup) -> None:
    async with in_process_daemon(setup) as daemon:
        other = await Raw.open(daemon.socket_path)
        for _ in range(5):
            leaver = await Raw.open(daemon.socket_path)
            await leaver.call("subscribe", {"topics": ["log"], "capacity": 100})
            for i in range(300):  # more than the socket buffer holds: the pump is mid-send
                daemon.core.logbook.note(f"{i} " + "y" * 4000)
            await anyio.sleep(0)
            await leaver.aclose()
            await anyio.sleep(0.05)
            await _still_serving(other)
        with anyio.fail_after(5):
            while daemon.core.bus.subscriber_count:
                await anyio.sleep(0.01)
