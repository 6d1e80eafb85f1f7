"""The daemon's loop (llm_mcp/daemon/event_loop.py): uvloop, as installed by pyproject on Linux."""

from __future__ import annotations

import asyncio
import sys

import anyio

from llm_mcp.daemon import event_loop


def test_the_daemon_runs_on_uvloop_and_anyio_works_there() -> None:
    assert sys.platform == "linux" and event_loop.loop_name() == "uvloop"  # a dependency here

    async def main() -> tuple[str, int]:
        async with anyio.create_task_group() as tg:  # tasks, threads and cancellation as anyio has them
            tg.start_soon(anyio.sleep, 0)
            n = await anyio.to_thread.run_sync(lambda: 41) + 1
        with anyio.move_on_after(0.01):
            await anyio.sleep(5)
        return type(asyncio.get_running_loop()).__module__, n

    module, n = event_loop.run(main)
    assert module.startswith("uvloop") and n == 42
