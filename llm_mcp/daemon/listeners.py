"""An accept loop no client can end: anyio's Listener.serve lets an accept error or a
handler's exception out into the caller's task group, which for the daemon means exiting."""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

log = logging.getLogger("llm_mcp.daemon.listeners")

# Out of file descriptors or a connection reset before accept: wait a moment and go on.
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO,
              errno.EINTR, errno.EAGAIN}


async def serve_forever(listener: anyio.abc.SocketListener | MultiListener[Any],
                        handler: Callable[[Any], Awaitable[None]]) -> None:
    """Accept until cancelled; each connection runs `handler`, whose errors are logged, not raised."""

    async def guarded(stream: Any) -> None:
        try:
            await handler(stream)
        except Exception:
            log.exception("a connection handler failed; the daemon goes on")
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await _aclose(stream)

    async def accept_loop(one: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        backoff = 0.01
        while True:
            try:
                stream = await one.accept()
            except (OSError, anyio.BrokenResourceError) as raised:
                # anyio's Unix listener wraps the OSError in BrokenResourceError
                exc = raised if isinstance(raised, OSError) else raised.__cause__
                if not isinstance(exc, OSError) or exc.errno not in _TRANSIENT:
                    raise
                log.warning("accept failed (%s); retrying in %.2fs", exc, backoff)
                await anyio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            backoff = 0.01
            tg.start_soon(guarded, stream)

    # create_tcp_listener gives a MultiListener (one socket per address family it bound)
    singles = [x for x in listener.listeners if isinstance(x, anyio.abc.SocketListener)] \
        if isinstance(listener, MultiListener) else [listener]
    async with anyio.create_task_group() as tg:
        for one in singles:
            tg.start_soon(accept_loop, one, tg)


async def _aclose(stream: Any) -> None:
    with contextlib.suppress(Exception):  # already failed; closing is best effort
        await stream.aclose()
