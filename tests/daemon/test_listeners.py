"""The accept loop outlives any connection handler that fails."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.abc
import pytest

from llm_mcp.daemon.listeners import serve_forever

pytestmark = [pytest.mark.anyio]


async def test_a_handler_that_raises_ends_its_connection_only(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    served: list[bytes] = []

    async def handler(stream: anyio.abc.SocketStream) -> None:
        data = await stream.receive()
        if data == b"boom":
            raise RuntimeError("a bug in one connection's handler")
        served.append(data)
        await stream.send(b"ok")
        await stream.aclose()

    async with await anyio.create_unix_listener(path) as listener, anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, listener, handler)
        for payload in (b"boom", b"hello", b"boom", b"again"):
            async with await anyio.connect_unix(path) as client:
                await client.send(payload)
                with anyio.fail_after(5):
                    try:
                        reply = await client.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        reply = b""
            assert reply == (b"" if payload == b"boom" else b"ok")
        tg.cancel_scope.cancel()
    assert served == [b"hello", b"again"]


async def test_tcp_listeners_of_every_address_family_are_served(tmp_path: Path) -> None:
    async def handler(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"hi")
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, listener, handler)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            with anyio.fail_after(5):
                assert await client.receive() == b"hi"
        tg.cancel_scope.cancel()
