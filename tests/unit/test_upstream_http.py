"""upstream_http against a stand-in server on a real socket, which the test writes byte by byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream

from llm_mcp.daemon.proxy_gate import idle_limit
from llm_mcp.daemon.upstream_http import MAX_HEAD, Upstream, UpstreamError, UpstreamResponse

pytestmark = pytest.mark.anyio

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@asynccontextmanager
async def peer() -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[SocketStream]]]:
    """A listening socket; every connection it accepts is handed to the test, which answers it."""
    send, accepted = anyio.create_memory_object_stream[SocketStream](16)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            await send.send(stream)
            await anyio.sleep_forever()  # open until the test closes it or ends

    async with send, accepted, listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://127.0.0.1:{port}", accepted
        finally:
            tg.cancel_scope.cancel()


async def read_request(stream: SocketStream) -> bytes:
    """One request's head and body, as the server got it."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


async def ask(upstream: Upstream, url: str, accepted: MemoryObjectReceiveStream[SocketStream],
              answer: bytes, stream: SocketStream | None = None) -> tuple[UpstreamResponse, SocketStream]:
    """A POST, answered by the peer with `answer` on `stream` (or on the next connection it accepts)."""
    result: list[UpstreamResponse | UpstreamError] = []

    async def client() -> None:
        try:
            result.append(await upstream.request("m", url, "POST", "/v1/chat/completions", body=b'{"a": 1}',
                                                 headers=[("content-type", "application/json")]))
        except UpstreamError as exc:
            result.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            if stream is None:
                stream = await accepted.receive()
            request = await read_request(stream)
            assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
            assert request.endswith(b"content-type: application/json\r\nContent-Length: 8\r\n\r\n"
                                    b'{"a": 1}')
            await stream.send(answer)
    if isinstance(result[0], UpstreamError):
        raise result[0]
    assert stream is not None
    return result[0], stream


async def test_a_chunked_body_split_across_reads_comes_whole_without_extensions_and_trailers() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        response, stream = await ask(upstream, url, accepted, OK_HEAD + b"5;name=value\r\nhel")
        assert response.status == 200
        assert response.header(b"content-type") == b"text/event-stream"
        parts = [await response.receive()]
        for piece in (b"lo\r\n6\r\n wo", b"rld\r\n0\r\nx-trai", b"ler: 1\r\n\r\n"):
            await stream.send(piece)
            with anyio.fail_after(5):
                while part := await response.receive():
                    parts.append(part)
                    if part.endswith(b"wo") or part.endswith(b"rld"):
                        break  # the rest comes with the next piece
        assert b"".join(parts) == b"hello world"
        assert len(parts) >= 3  # as it came, not held back until the end
        assert await response.receive() == b""
        response.release()
        # read to its end: the connection is kept and the next request goes on it
        again, _ = await ask(upstream, url, accepted, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                             stream)
        assert await again.read() == b"ok"
        again.release()
        await upstream.aclose()


async def test_many_chunks_in_one_read_come_together_and_whole_wherever_the_reads_split_them() -> None:
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(2000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        stream = None
        for cut in (0, 1, 2, 5, 7, len(body) // 2, len(body) - 3):  # in a size line, a CRLF, data
            response, stream = await ask(upstream, url, accepted, OK_HEAD + body[:cut], stream)
            received: list[bytes] = []

            async def rest(stream: SocketStream = stream, cut: int = cut) -> None:
                await anyio.sleep(0.02)  # the reader has taken what came with the head (a partial line)
                await stream.send(body[cut:])

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(rest)
                    while part := await response.receive():
                        received.append(part)
            assert b"".join(received) == b"".join(events)
            assert len(received) <= 60  # relayed as they came, not one piece a chunk (2,000)
            response.release()  # read to its end: the next request goes on the same connection
        await upstream.aclose()


async def test_a_content_length_body_ends_at_its_length_and_keeps_the_connection() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        body = b'{"error": {"message": "bad"}}'
        response, stream = await ask(upstream, url, accepted, b"HTTP/1.1 400 Bad Request\r\nContent-Type: "
                                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert response.status == 400
        assert await response.read() == body
        response.release()
        again, same = await ask(upstream, url, accepted, b"HTTP/1.1 204 No Content\r\n\r\n", stream)
        assert same is stream and again.status == 204 and await again.read() == b""
        again.release()
        await upstream.aclose()


async def test_a_body_without_length_is_read_to_the_close_and_its_connection_not_reused() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        response, stream = await ask(upstream, url, accepted, b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await stream.aclose()
        with anyio.fail_after(5):
            assert await response.read() == b"all of it"
        response.release()
        again, other = await ask(upstream, url, accepted, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert other is not stream
        again.release()
        await upstream.aclose()


async def test_a_head_over_64_kib_is_refused() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        huge = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * MAX_HEAD + b"\r\n\r\n"
        with pytest.raises(UpstreamError, match=f"longer than {MAX_HEAD} bytes"):
            await ask(upstream, url, accepted, huge)
        await upstream.aclose()


async def test_a_server_closing_in_the_middle_of_a_chunk_is_a_clear_error() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        response, stream = await ask(upstream, url, accepted, OK_HEAD + b"a\r\nhello")
        assert await response.receive() == b"hello"
        await stream.aclose()
        with anyio.fail_after(5), pytest.raises(UpstreamError, match="in the middle of a chunk"):
            await response.receive()
        response.release()
        await upstream.aclose()


async def test_a_kept_connection_the_server_closes_as_it_is_reused_is_retried_once_on_a_new_one() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        response, stream = await ask(upstream, url, accepted, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        response.release()
        result: list[UpstreamResponse] = []

        async def client() -> None:
            result.append(await upstream.request("m", url, "GET", "/props", headers=[], body=b""))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client)
                assert (await read_request(stream)).startswith(b"GET /props HTTP/1.1\r\n")
                await stream.aclose()  # it saw the request and closed without a word: sent again
                fresh = await accepted.receive()
                assert (await read_request(fresh)).startswith(b"GET /props HTTP/1.1\r\n")
                await fresh.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        assert await result[0].read() == b"{}"
        result[0].release()
        await upstream.aclose()


async def test_an_unreachable_server_and_a_non_http_answer_are_upstream_errors() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        with pytest.raises(UpstreamError, match=r"not an HTTP/1\.x status line"):
            await ask(upstream, url, accepted, b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(UpstreamError, match="connecting to"):
        await upstream.request("m", url, "GET", "/health", headers=[], body=b"")  # the peer is gone
    await upstream.aclose()


async def test_a_path_is_sent_percent_encoded_so_it_cannot_split_the_request() -> None:
    upstream = Upstream(connect_timeout=5)
    async with peer() as (url, accepted):
        result: list[UpstreamResponse] = []

        async def client() -> None:
            result.append(await upstream.request("m", url, "GET", "/a b\r\nx: y?q=1", headers=[], body=b""))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client)
                stream = await accepted.receive()
                assert (await read_request(stream)).startswith(b"GET /a%20b%0D%0Ax:%20y?q=1 HTTP/1.1\r\n")
                await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        result[0].release()
        await upstream.aclose()


async def test_as_many_connections_are_kept_as_the_server_can_spare_threads_for() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    answered: list[UpstreamResponse] = []
    for keep in (3, 0):
        upstream = Upstream(connect_timeout=5)
        answered.clear()

        async def client(upstream: Upstream = upstream, keep: int = keep) -> None:
            answered.append(await upstream.request("m", url, "GET", "/props", headers=[], body=b"",
                                                   max_idle=keep))

        async with peer() as (url, accepted):
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:  # five at once: five connections
                    for _ in range(5):
                        tg.start_soon(client)
                    for _ in range(5):
                        stream = await accepted.receive()
                        await read_request(stream)
                        await stream.send(ok)
            for response in answered:
                assert await response.read() == b"{}"
                response.release()
            assert len(upstream._places["m"].idle) == keep
            await upstream.aclose()


def test_the_idle_limit_is_the_servers_slots_less_what_its_http_threads_lack() -> None:
    assert idle_limit(()) == 4  # llama-server's default: 4 slots
    assert idle_limit(("--parallel", "16")) == 16 and idle_limit(("-np", "2")) == 2
    assert idle_limit(("-np", "-1")) == 4  # auto
    assert idle_limit(("--parallel", "16", "--threads-http", "6")) == 4  # two threads left for /health
    assert idle_limit(("--threads-http=2",)) == 0
    assert idle_limit(("--parallel", "9999")) == 64  # bounded whatever the flags say
