"""The HTTP API: loopback only unless asked, JSON everywhere, status codes that mean something."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from llm_mcp.daemon.http_api import _job_outcome, parse_bind, serve_http
from llm_mcp.daemon.server import Daemon
from tests.conftest import FAKE_PROFILES, Setup, free_port
from tests.daemons import SLOW_AND_BROKEN, Daemons, cli, in_process_daemon

pytestmark = [pytest.mark.anyio]



@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8765", ("127.0.0.1", 8765)),
    ("localhost:8765", ("localhost", 8765)),
    ("[::1]:8765", ("::1", 8765)),
    ("127.0.0.2:1", ("127.0.0.2", 1)),
    ("8765", ("127.0.0.1", 8765)),
    (":8765", ("127.0.0.1", 8765)),
])
def test_loopback_binds_are_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:8765", "192.168.1.20:8765", "[::]:8765", "example.com:80"])
def test_a_non_loopback_bind_is_refused_unless_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="--allow-remote"):
        parse_bind(text)
    assert parse_bind(text, allow_remote=True)[1] in (80, 8765)


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000", "::1:8765", "[::1]8765", "127.0.0.1:"])
def test_malformed_binds_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|bracket|HOST:PORT"):
        parse_bind(text, allow_remote=True)


def test_the_daemon_refuses_to_serve_http_on_all_interfaces(setup: Setup, daemons: Daemons) -> None:
    done = cli(setup, "daemon", "--http", f"0.0.0.0:{free_port()}", timeout=30)
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr and "Traceback" not in done.stderr
    assert daemons.pids() == []


@pytest.fixture
async def api(setup: Setup) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    setup.write(FAKE_PROFILES + SLOW_AND_BROKEN)
    async with in_process_daemon(setup) as daemon, anyio.create_task_group() as tg:
        port = await tg.start(serve_http, daemon, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield daemon, client
        tg.cancel_scope.cancel()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    return body


async def _untouched(client: httpx.AsyncClient) -> None:
    """Nothing runs and no job is in flight (read from the wire: status, one model or several)."""
    status = (await client.get("/status")).json()
    assert status["state"] == "stopped" and status["job"] is None and status.get("jobs", []) == [], status


@pytest.mark.docker
async def test_models_status_and_a_switch_to_ready(api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    models = await client.get("/models")
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["models"]] == ["fake-a", "fake-b", "slow", "broken"]
    assert (await client.get("/status")).json()["state"] == "stopped"

    switched = await client.post("/switch", json={"model": "fake-a"})
    assert switched.status_code == 200, switched.text
    job = switched.json()
    assert job["result"] == "ready" and job["profile"] == "fake-a"
    status = (await client.get("/status")).json()
    assert status["state"] == "ready" and status["profile"]["id"] == "fake-a"
    assert (await client.get(f"/jobs/{job['id']}")).json()["result"] == "ready"

    logs = await client.get("/logs", params={"n": 3})
    assert logs.status_code == 200 and 0 < len(logs.json()["lines"]) <= 3
    filtered = (await client.get("/logs", params={"n": 50, "filter": "listening"})).json()["lines"]
    assert filtered and all("listening" in ln["text"] for ln in filtered)

    stopped = await client.post("/stop", json={})
    assert stopped.status_code == 200 and stopped.json()["result"] == "stopped"
    assert (await client.get("/status")).json()["state"] == "stopped"


@pytest.mark.docker
async def test_unload_stops_one_model_and_one_that_does_not_run_is_404(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    body = _error(await client.post("/unload", json={"model": "fake-a"}), 404)
    assert body["error"]["reason"] == "not_running" and body["error"]["valid"] == []
    assert (await client.post("/switch", json={"model": "fake-a"})).status_code == 200

    unloaded = await client.post("/unload", json={"model": "fake-a", "timeout": 60})
    assert unloaded.status_code == 200, unloaded.text
    assert unloaded.json()["result"] == "stopped"
    assert (await client.get("/status")).json()["state"] == "stopped"
    assert _error(await client.post("/unload", json={}), 400)["error"]["reason"] == "bad_request"


@pytest.mark.docker
async def test_an_unknown_model_is_404_with_the_valid_ids(api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    body = _error(await client.post("/switch", json={"model": "nope"}), 404)
    assert body["error"]["reason"] == "unknown_model"
    assert body["error"]["valid"] == ["fake-a", "fake-b", "slow", "broken"]


@pytest.mark.docker
async def test_a_failed_switch_is_422_with_reason_hint_rollback_and_log_lines(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    assert (await client.post("/switch", json={"model": "fake-b"})).status_code == 200
    body = _error(await client.post("/switch", json={"model": "broken"}), 422)
    error = body["error"]
    assert error["reason"] and error["hint"]
    assert error["restored"] is True
    assert error["log_lines"]
    assert body["job"]["result"] == "failed"
    status = (await client.get("/status")).json()
    assert status["state"] == "ready" and status["profile"]["id"] == "fake-b"


@pytest.mark.docker
async def test_busy_is_409_with_the_job_and_a_wait_that_runs_out_is_504(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    daemon, client = api
    slow = await daemon.dispatch("switch", {"model": "slow"})
    body = _error(await client.post("/switch", json={"model": "fake-a"}), 409)
    assert body["error"]["reason"] == "busy" and body["job"]["id"] == slow["id"]

    waited = _error(await client.post("/switch", json={"model": "slow", "timeout": 0.3}), 504)
    assert waited["job"]["id"] == slow["id"] and waited["job"]["done"] is False  # joined, not restarted

    forced = await client.post("/switch", json={"model": "fake-a", "force": True})
    assert forced.status_code == 200, forced.text
    assert (await client.get(f"/jobs/{slow['id']}")).json()["result"] == "cancelled"


@pytest.mark.docker
@pytest.mark.parametrize(("method", "path", "kwargs", "status", "reason"), [
    ("POST", "/switch", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "bad_json"),
    ("POST", "/switch", {"json": ["fake-a"]}, 400, "bad_json"),
    ("POST", "/switch", {"json": {}}, 400, "bad_request"),
    ("POST", "/switch", {"json": {"model": 5}}, 400, "bad_request"),
    ("POST", "/switch", {"json": {"modle": "fake-a"}}, 400, "bad_request"),
    ("POST", "/switch", {"json": {"model": "fake-a", "timeout": "soon"}}, 400, "bad_request"),
    ("POST", "/switch", {"json": {"model": "fake-a", "force": "yes"}}, 400, "bad_request"),
    ("POST", "/switch", {"data": {"model": "fake-a"}}, 415, "unsupported_media_type"),
    ("GET", "/logs?n=ten", {}, 400, "bad_request"),
    ("GET", "/logs?n=-1", {}, 400, "bad_request"),
    ("GET", "/logs?n=10001", {}, 400, "bad_request"),
    ("POST", "/switch", {"json": {"model": "fake-a", "timeout": 1e308}}, 400, "bad_request"),
    ("POST", "/stop", {"json": {"timeout": -1}}, 400, "bad_request"),
    ("POST", "/stop", {"json": {"force": 1}}, 400, "bad_request"),
    ("GET", "/logs?filter=(", {}, 400, "invalid_filter"),
    ("GET", "/jobs/job-0-0", {}, 404, "unknown_job"),
    ("GET", "/nowhere", {}, 404, "not_found"),
    ("GET", "/switch", {}, 405, "method_not_allowed"),
    ("DELETE", "/status", {}, 405, "method_not_allowed"),
    ("GET", "/status", {"headers": {"host": "attacker.example:80"}}, 403, "forbidden_host"),
    ("POST", "/stop", {"json": {}, "headers": {"host": "rebound.example"}}, 403, "forbidden_host"),
    ("POST", "/switch", {"json": {"model": "fake-a", "pad": "x" * (1 << 20)}}, 413, "too_large"),
    ("POST", "/unload", {"json": {"model": "fake-a", "timeout": 0}}, 400, "bad_request"),
])
async def test_bad_requests_get_json_errors_and_change_nothing(
        api: tuple[Daemon, httpx.AsyncClient], method: str, path: str, kwargs: dict[str, Any],
        status: int, reason: str) -> None:
    _, client = api
    body = _error(await client.request(method, path, **kwargs), status)
    assert body["error"]["reason"] == reason
    await _untouched(client)
    assert (await client.get("/status")).status_code == 200  # same keep-alive connection, still fine


@pytest.mark.docker
async def test_garbage_on_the_http_port_gets_400_and_the_server_keeps_going(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    port = client.base_url.port
    assert port is not None
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(b"\x16\x03\x01 not http at all\r\n\r\n")
        with anyio.fail_after(5):
            reply = await stream.receive()
    assert reply.startswith(b"HTTP/1.1 400")
    assert (await client.get("/status")).status_code == 200


@pytest.mark.docker
async def test_a_trailing_slash_is_the_same_endpoint_and_replies_name_the_server(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    response = await client.get("/status/")
    assert response.status_code == 200 and response.json()["state"] == "stopped"
    assert response.headers["server"].startswith("llm-mcp/")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.docker
async def test_a_chunked_body_over_the_bound_is_413_and_the_server_keeps_going(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "fake-a", "pad": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    body = _error(await client.post("/switch", content=chunks(),
                                    headers={"content-type": "application/json"}), 413)
    assert body["error"]["reason"] == "too_large"
    assert (await client.get("/status")).status_code == 200


class _Exploding:
    async def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        raise RuntimeError("boom")


async def test_an_internal_error_is_a_500_json_error() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, _Exploding(), "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body = _error(await client.get("/status"), 500)
        tg.cancel_scope.cancel()
    assert body["error"]["reason"] == "internal_error" and "boom" in body["error"]["message"]


class _Hanging:
    """A stand-in daemon whose status never answers (a switch waiting on a slow load, say)."""

    def __init__(self) -> None:
        self.asked = anyio.Event()

    async def dispatch(self, method: str, params: dict[str, Any]) -> Any:
        if method == "list_models":
            return {"models": []}
        self.asked.set()
        await anyio.sleep_forever()


async def test_the_server_stops_promptly_and_a_request_in_flight_gets_a_json_503() -> None:
    import time

    from llm_mcp.daemon.asgi_server import GRACE

    daemon = _Hanging()
    replies: list[httpx.Response] = []
    async with anyio.create_task_group() as outer:
        serving = anyio.CancelScope()

        async def serve(*, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
            with serving:
                await serve_http(daemon, "127.0.0.1", 0, task_status=task_status)

        port = await outer.start(serve)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as idle, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as waiting:
            assert (await idle.get("/models")).status_code == 200  # a keep-alive connection, idle now

            async def ask() -> None:
                replies.append(await waiting.get("/status"))

            outer.start_soon(ask)
            with anyio.fail_after(5):
                await daemon.asked.wait()
            began = time.monotonic()
            serving.cancel()
            with anyio.fail_after(GRACE + 3):
                while replies == [] or not _refused(port):
                    await anyio.sleep(0.02)
            took = time.monotonic() - began
    assert took < GRACE + 1, took
    body = _error(replies[0], 503)
    assert body["error"]["reason"] == "daemon_stopping"


async def test_replies_on_a_keep_alive_connection_wait_for_no_delayed_ack_and_an_idle_server_stops_at_once(
        ) -> None:
    import statistics
    import time

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, _Hanging(), "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            took = []
            for _ in range(21):
                began = time.perf_counter()
                assert (await client.get("/models")).status_code == 200
                took.append(time.perf_counter() - began)
            # Nagle on the server's side holds a reply's body until the client's delayed ACK: 40 ms
            assert statistics.median(took) < 0.02, took
            began = time.perf_counter()
            tg.cancel_scope.cancel()
    assert time.perf_counter() - began < 1


@pytest.mark.parametrize("flood", ["many headers", "one endless header", "an endless target"])
async def test_a_request_head_over_the_bound_is_431_and_the_connection_closed(flood: str) -> None:
    import socket

    from llm_mcp.daemon.asgi_server import MAX_HEAD

    def attack(port: int) -> tuple[int, bytes]:
        """Sends the flood until the server closes; how much went, and what came back."""
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            start = {"many headers": b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                     "one endless header": b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\nx-pad: ",
                     "an endless target": b"GET /models?"}[flood]
            sock.sendall(start)
            piece = b"x-pad: " + b"a" * 4000 + b"\r\n" if flood == "many headers" else b"a" * 4000
            try:
                while sent < 64 << 20:
                    sock.sendall(piece)
                    sent += len(piece)
            except OSError:  # reset: the server closed with our bytes unread
                pass
            reply = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    reply += chunk
        return sent, reply

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, _Hanging(), "127.0.0.1", 0)
        sent, reply = await anyio.to_thread.run_sync(attack, port)
        # unbounded, all 64 MiB go in; bounded, what the two sockets' kernel buffers hold (~4 MiB)
        assert sent < 32 << 20, f"the server kept reading a head of {sent} bytes"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]  # a reset may eat it
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/models", headers={"x-big": "a" * (MAX_HEAD // 2)})).status_code == 200
        tg.cancel_scope.cancel()


async def test_the_http_server_leaves_the_daemons_signal_handlers_alone() -> None:
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, _Hanging(), "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/models")).status_code == 200
            assert {sig: signal.getsignal(sig) for sig in before} == before
        tg.cancel_scope.cancel()
    assert {sig: signal.getsignal(sig) for sig in before} == before


async def test_a_port_in_use_is_an_oserror_before_serving() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError, match="in use"):
                await tg.start(serve_http, _Hanging(), "127.0.0.1", taken.getsockname()[1])


def test_docker_unavailable_during_a_switch_is_503() -> None:
    from llm_mcp.daemon.http_api import _HttpError

    job = {"id": "job-1", "done": True, "result": "failed", "reason": "docker_unavailable",
           "message": "Docker is not reachable", "hint": "start Docker", "log_lines": []}
    with pytest.raises(_HttpError) as raised:
        _job_outcome(job, 10)
    assert raised.value.status == 503 and raised.value.body["error"]["reason"] == "docker_unavailable"


@pytest.mark.docker
async def test_the_daemon_serves_http_when_asked(setup: Setup, daemons: Daemons) -> None:
    port = free_port()
    daemons.start("--http", f"127.0.0.1:{port}")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        with anyio.fail_after(10):
            while True:
                try:
                    response = await client.get("/status")
                    break
                except httpx.ConnectError:
                    await anyio.sleep(0.05)
        assert response.status_code == 200 and response.json()["state"] == "stopped"
        models = (await client.get("/models")).json()["models"]
    assert {m["id"] for m in models} == {"fake-a", "fake-b"}


# ---- the HTTP API is a daemon setting (models.conf [daemon], $LLM_MCP_HTTP) -------------------


def _daemon_section(port: int) -> str:
    return f"\n[daemon]\nhttp = 127.0.0.1:{port}\n"


async def _http_status(port: int, timeout: float = 20) -> int:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        with anyio.fail_after(timeout):
            while True:
                try:
                    return (await client.get("/status")).status_code
                except httpx.ConnectError:
                    await anyio.sleep(0.05)


def _refused(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _stop_daemon(d: Daemons) -> None:
    import os
    import signal
    import time

    for pid in d.pids():
        os.kill(pid, signal.SIGTERM)
    until = time.monotonic() + 20
    while d.pids():
        assert time.monotonic() < until, d.pids()
        time.sleep(0.05)


@pytest.mark.docker
async def test_models_conf_http_is_served_by_every_daemon_a_client_starts(
        setup: Setup, daemons: Daemons) -> None:
    port = free_port()
    setup.write(FAKE_PROFILES + _daemon_section(port))
    assert cli(setup, "status").returncode == 0  # a client starts the daemon: it serves HTTP too
    assert await _http_status(port) == 200
    hello = (await _hello(daemons))
    assert hello["http"] == f"127.0.0.1:{port}"
    _stop_daemon(daemons)
    assert _refused(port)
    assert cli(setup, "models").returncode == 0  # another client restarts it: HTTP comes back
    assert await _http_status(port) == 200


async def _hello(d: Daemons) -> dict[str, Any]:
    from llm_mcp.clients.client import DaemonClient

    async with DaemonClient(d.socket, autostart=False) as client:
        await client.call("status", gpu=False)
        return dict(client.hello)


@pytest.mark.docker
async def test_the_environment_overrides_models_conf_and_can_turn_it_off(
        setup: Setup, daemons: Daemons) -> None:
    conf_port, env_port = free_port(), free_port()
    setup.write(FAKE_PROFILES + _daemon_section(conf_port))
    daemons.start(env={**setup.env(), "LLM_MCP_HTTP": f"127.0.0.1:{env_port}"})
    assert await _http_status(env_port) == 200
    assert _refused(conf_port)
    _stop_daemon(daemons)
    daemons.start(env={**setup.env(), "LLM_MCP_HTTP": "off"})
    assert (await _hello(daemons))["http"] is None
    assert _refused(conf_port)


@pytest.mark.docker
async def test_daemon_http_against_a_running_daemon_without_it_exits_non_zero_with_the_fix(
        setup: Setup, daemons: Daemons) -> None:
    first = daemons.start()
    port = free_port()
    done = cli(setup, "daemon", "--http", f"127.0.0.1:{port}", timeout=30)
    assert done.returncode == 2, done.stderr
    assert f"pid {first.pid}" in done.stderr and "does not serve the HTTP API" in done.stderr
    assert "[daemon]" in done.stderr and f"LLM_MCP_HTTP=127.0.0.1:{port}" in done.stderr
    assert "restart the daemon" in done.stderr and "Traceback" not in done.stderr
    assert daemons.pids() == [first.pid]
    _stop_daemon(daemons)

    served = daemons.start("--http", f"127.0.0.1:{port}")
    assert await _http_status(port) == 200
    again = cli(setup, "daemon", "--http", f"127.0.0.1:{port}", timeout=30)
    assert again.returncode == 0, again.stderr
    assert f"serving the HTTP API on 127.0.0.1:{port}" in again.stderr
    other = cli(setup, "daemon", "--http", f"127.0.0.1:{free_port()}", timeout=30)
    assert other.returncode == 2 and f"serves the HTTP API on 127.0.0.1:{port}" in other.stderr
    assert daemons.pids() == [served.pid]


@pytest.mark.docker
async def test_an_http_port_in_use_leaves_the_socket_daemon_serving_and_says_why(
        setup: Setup, daemons: Daemons) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup.write(FAKE_PROFILES + _daemon_section(port))
        done = cli(setup, "status")
        assert done.returncode == 0, done.stderr
        assert (await _hello(daemons))["http"] is None
        log = (setup.state_dir / "daemon.log").read_text()
        assert f"cannot serve the HTTP API on 127.0.0.1:{port}" in log


@pytest.mark.docker
@pytest.mark.parametrize(("method", "path", "headers"), [
    ("GET", "/status", {"origin": "http://evil.example"}),
    ("GET", "/logs?n=5", {"origin": "https://evil.example"}),
    ("GET", "/models", {"origin": "null"}),
    ("GET", "/logs?filter=x", {"sec-fetch-site": "cross-site"}),
    ("GET", "/status", {"sec-fetch-site": "same-site"}),
    ("POST", "/stop", {"origin": "http://evil.example", "content-type": "application/json"}),
])
async def test_a_request_from_another_sites_page_is_refused_for_gets_too(
        api: tuple[Daemon, httpx.AsyncClient], method: str, path: str, headers: dict[str, str]) -> None:
    _, client = api
    content = b"{}" if method == "POST" else None
    body = _error(await client.request(method, path, headers=headers, content=content), 403)
    assert body["error"]["reason"] == "forbidden_origin"
    await _untouched(client)


@pytest.mark.docker
async def test_same_origin_requests_and_scripts_without_origin_are_served(
        api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    own = f"http://127.0.0.1:{client.base_url.port}"
    assert (await client.get("/status", headers={"origin": own})).status_code == 200
    assert (await client.get("/status", headers={"sec-fetch-site": "same-origin"})).status_code == 200
    assert (await client.get("/status", headers={"sec-fetch-site": "none"})).status_code == 200
    assert (await client.get("/status")).status_code == 200


@pytest.mark.docker
async def test_the_unknown_model_hint_names_the_http_endpoint(api: tuple[Daemon, httpx.AsyncClient]) -> None:
    _, client = api
    body = _error(await client.post("/switch", json={"model": "nope"}), 404)
    assert "GET /models" in body["error"]["hint"] and "list_models" not in body["error"]["hint"]


# ---- the [daemon] section and the choice between flag, environment and file ---------------------


@pytest.mark.parametrize(("section", "message"), [
    ("[daemon]\nhtp = 127.0.0.1:8765\n", ":10: [daemon] htp: unknown key; did you mean 'http'?"),
    ("[daemon]\nhttp = 0.0.0.0:8765\n", ":10: [daemon] http: 0.0.0.0 is not a loopback address"),
    ("[daemon]\nhttp = 127.0.0.1:http\n", ":10: [daemon] http: 'http' in '127.0.0.1:http' is not a port"),
    ("[daemon]\nhttp = 127.0.0.1:70000\n", ":10: [daemon] http: port 70000 is out of range"),
    ("[daemon]\nhttp_allow_remote = maybe\n", ":10: [daemon] http_allow_remote: 'maybe' is not a boolean"),
])
def test_a_bad_daemon_section_is_located_by_file_line_and_key(section: str, message: str) -> None:
    from pathlib import Path

    from llm_mcp.config.models_conf import ConfigError, parse_config

    text = "[defaults]\nmodels_dir = /tmp\n\n[a]\nmodel = a.gguf\n\n# the daemon\n\n" + section
    with pytest.raises(ConfigError) as raised:
        parse_config(text, Path("/etc/models.conf"))
    assert f"/etc/models.conf{message}" in str(raised.value)


def test_the_daemon_section_is_read_and_a_remote_bind_is_a_warning_when_allowed() -> None:
    from pathlib import Path

    from llm_mcp.config.models_conf import DaemonSettings, parse_config

    base = "[defaults]\nmodels_dir = /tmp\n[a]\nmodel = a.gguf\n"
    assert parse_config(base, Path("/m.conf")).daemon == DaemonSettings(None, False)
    local = parse_config(base + "[daemon]\nhttp = 127.0.0.1:8765\n", Path("/m.conf"))
    assert local.daemon == DaemonSettings("127.0.0.1:8765", False) and not local.warnings
    remote = parse_config(base + "[daemon]\nhttp = 0.0.0.0:8765\nhttp_allow_remote = true\n",
                          Path("/m.conf"))
    assert remote.daemon.http == "0.0.0.0:8765"
    assert any("[daemon] http" in w and "no authentication" in w for w in remote.warnings)
    assert parse_config(base + "[daemon]\nhttp = off\n", Path("/m.conf")).daemon.http is None


def test_the_flag_wins_then_the_environment_then_models_conf() -> None:
    from llm_mcp.config.binds import choose_http

    assert choose_http(("127.0.0.1", 1), "127.0.0.1:2", "127.0.0.1:3", False) == ("127.0.0.1", 1)
    assert choose_http(None, "127.0.0.1:2", "127.0.0.1:3", False) == ("127.0.0.1", 2)
    assert choose_http(None, "off", "127.0.0.1:3", False) is None
    assert choose_http(None, None, "127.0.0.1:3", False) == ("127.0.0.1", 3)
    assert choose_http(None, None, None, False) is None
    with pytest.raises(ValueError, match=r"LLM_MCP_HTTP='0.0.0.0:2'.*http_allow_remote"):
        choose_http(None, "0.0.0.0:2", None, False)
    assert choose_http(None, "0.0.0.0:2", None, True) == ("0.0.0.0", 2)
