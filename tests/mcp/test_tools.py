"""The MCP tools through the SDK's in-memory Client, against a real daemon and real Docker.

Every test runs twice: `legacy` (the initialize handshake, what Claude Code speaks) and
`auto` (the newest protocol).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from llm_mcp.clients.client import DaemonClient
from llm_mcp.clients.mcp_server import make_server
from tests.conftest import FAKE_IMAGE, SIDE_BY_SIDE, Setup
from tests.mcp.conftest import MCP_PROFILES, SLOW_SECONDS

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SNAPSHOT = Path(__file__).with_name("tools_list.json")
UPDATE = os.environ.get("LLM_MCP_UPDATE_SNAPSHOT") == "1"
PHASE_ORDER = ["queued", "draining", "stopping_previous", "starting", "loading", "loading_model",
               "loading_tensors", "creating_context", "warming_up", "model_loaded", "listening", "ready"]


@pytest.fixture
async def mcp(daemon: DaemonClient, mode: str) -> AsyncIterator[Client]:
    async with Client(make_server(daemon), mode=mode) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(client: Client, name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    result = await client.call_tool(name, args or {}, **kw)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_tools_list_matches_the_checked_in_snapshot(mcp: Client) -> None:
    tools = (await mcp.list_tools()).tools
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    if UPDATE:
        SNAPSHOT.write_text(json.dumps(listed, indent=2) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert listed == expected, "tools/list changed: review, then LLM_MCP_UPDATE_SNAPSHOT=1 pytest tests/mcp"
    annotations = {t.name: t.annotations for t in tools}
    for name in ("list_models", "status", "tail_logs"):
        hints = annotations[name]
        assert hints is not None and hints.read_only_hint is True
    for name in ("switch_model", "unload_model"):
        hints = annotations[name]
        assert hints is not None and hints.destructive_hint is True and hints.idempotent_hint is True
    assert all(t.output_schema for t in tools)


async def test_instructions_say_when_to_use_each_tool(mcp: Client) -> None:
    text = mcp.instructions or ""
    for name in ("status", "list_models", "switch_model", "unload_model", "tail_logs", "wait=false",
                 "force=true", "would_replace", "keep serving"):
        assert name in text


async def test_list_models_gives_every_profile(mcp: Client) -> None:
    data = await call(mcp, "list_models")
    assert [m["id"] for m in data["models"]] == ["fake-a", "fake-b", "fake-slow", "fake-crash"]
    assert data["current"] is None
    slow = data["models"][2]
    assert slow["estimated_load_seconds"] == SLOW_SECONDS and slow["model_present"] is True


async def test_switch_reports_progress_with_phases_in_order_and_rising_percentages(mcp: Client) -> None:
    seen: list[tuple[float, float, float | None, str]] = []
    started = time.monotonic()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic() - started, progress, total, message or ""))

    with anyio.fail_after(60):
        data = await call(mcp, "switch_model", {"model": "fake-slow"}, progress_callback=on_progress)
    assert data["result"] == "ready" and data["done"] is True and data["waited"] is True
    assert data["profile"] == "fake-slow" and data["load_seconds"] >= SLOW_SECONDS - 0.5

    assert len(seen) >= 3, seen
    values = [p for _, p, _, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values), "progress must always increase"
    assert all(total == 100 for _, _, total, _ in seen)
    percents = [int(m) for _, _, _, msg in seen for m in re.findall(r"(\d+)%", msg)[:1]]
    assert len(percents) == len(seen) and percents == sorted(percents), seen
    assert percents[-1] == 100 and percents[0] < 100
    phases = [msg.split(" · ")[0] for _, _, _, msg in seen]
    assert all(p in PHASE_ORDER for p in phases), phases
    assert [PHASE_ORDER.index(p) for p in phases] == sorted(PHASE_ORDER.index(p) for p in phases), phases
    assert "loading_tensors" in phases and phases[-1] == "ready"
    assert any(f"of ~{SLOW_SECONDS}s" in msg for *_, msg in seen), "the estimate shows in the message"
    assert all("Fake Slow" in msg for *_, msg in seen)
    times = [0.0, *(at for at, *_ in seen)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < 5, gaps


async def test_switch_without_waiting_returns_a_job_that_status_follows_to_ready(mcp: Client) -> None:
    with anyio.fail_after(5):
        job = await call(mcp, "switch_model", {"model": "fake-slow", "wait": False})
    assert job["done"] is False and job["waited"] is False and job["result"] is None
    assert job["id"].startswith("job-") and "status" in job["summary"]
    followed = False
    with anyio.fail_after(60):
        while True:
            status = await call(mcp, "status")
            if status["job"] is not None:
                assert status["job"]["id"] == job["id"]
                followed = True
            if status["state"] == "ready":
                break
            await anyio.sleep(0.2)
    assert followed
    assert status["model"]["id"] == "fake-slow" and status["job"] is None
    assert status["last_switch"]["id"] == job["id"] and status["last_switch"]["result"] == "ready"
    assert status["summary"].startswith("ready: Fake Slow (fake-slow) at http://127.0.0.1:")


async def test_unknown_model_is_a_tool_error_listing_the_valid_ids(mcp: Client) -> None:
    result = await mcp.call_tool("switch_model", {"model": "fake-z"})
    assert result.is_error
    text = text_of(result)
    assert "unknown model 'fake-z'" in text
    for valid in ("fake-a", "fake-b", "fake-slow", "fake-crash"):
        assert valid in text
    assert "list_models" in text


async def test_switch_to_another_model_while_one_loads_is_refused_naming_the_job(mcp: Client) -> None:
    job = await call(mcp, "switch_model", {"model": "fake-slow", "wait": False})
    result = await mcp.call_tool("switch_model", {"model": "fake-a"})
    assert result.is_error
    text = text_of(result)
    assert job["id"] in text and "fake-slow" in text and "force=true" in text
    with anyio.fail_after(30):
        forced = await call(mcp, "switch_model", {"model": "fake-a", "force": True})
    assert forced["result"] == "ready" and forced["profile"] == "fake-a"
    status = await call(mcp, "status")
    assert status["state"] == "ready" and status["model"]["id"] == "fake-a"


async def test_switch_to_the_loaded_model_is_a_no_op(mcp: Client) -> None:
    with anyio.fail_after(30):
        first = await call(mcp, "switch_model", {"model": "fake-a"})
        again = await call(mcp, "switch_model", {"model": "fake-a"})
    assert first["result"] == again["result"] == "ready"
    assert again["id"] != first["id"] and "already loaded" in again["summary"]


async def test_failed_switch_is_a_tool_error_with_reason_hint_logs_and_rollback(mcp: Client) -> None:
    with anyio.fail_after(60):
        await call(mcp, "switch_model", {"model": "fake-a"})
        result = await mcp.call_tool("switch_model", {"model": "fake-crash"})
    assert result.is_error
    text = text_of(result)
    assert "switch to Fake Crash failed" in text and "[reason: crashed]" in text
    assert "hint: " in text and "the log lines that say why:\n  " in text
    why = text.split("the log lines that say why:\n", 1)[1].splitlines()
    assert "GGML_ASSERT" in why[0]  # the cause first, before the loading noise
    assert "'fake-a' was restored" in text
    status = await call(mcp, "status")
    assert status["state"] == "ready" and status["model"]["id"] == "fake-a"
    assert status["last_switch"]["result"] == "failed" and status["last_switch"]["reason"] == "crashed"
    logs = await call(mcp, "tail_logs", {"run": "previous", "filter": "ggml_assert"})
    assert logs["lines"] and all("GGML_ASSERT" in ln["text"] for ln in logs["lines"])


async def test_status_reports_speed_offload_and_gpu(mcp: Client) -> None:
    with anyio.fail_after(30):
        await call(mcp, "switch_model", {"model": "fake-a"})
        while True:  # the speed comes from a verification completion just after ready
            status = await call(mcp, "status")
            if status["speed"]["measured_tps"] is not None:
                break
            await anyio.sleep(0.2)
    assert status["speed"]["expected_tps"] == 100 and status["speed"]["as_expected"] is True
    assert status["offload"] is not None and status["offload"]["layers"] == status["offload"]["total"]
    assert status["gpu"] is not None and "available" in status["gpu"]
    assert status["daemon"]["pid"] and status["daemon"]["socket"]
    assert "as expected" in status["summary"] and "offload" in status["summary"]


async def test_tail_logs_returns_the_current_run(mcp: Client) -> None:
    with anyio.fail_after(30):
        await call(mcp, "switch_model", {"model": "fake-b"})
    logs = await call(mcp, "tail_logs", {"lines": 5})
    assert logs["run"] == "current" and 0 < len(logs["lines"]) <= 5
    assert any("listening on" in ln["text"] for ln in logs["lines"])
    bad = await mcp.call_tool("tail_logs", {"filter": "("})
    assert bad.is_error and "regex" in text_of(bad)


async def test_a_cancelled_call_detaches_and_the_switch_goes_on(mcp: Client) -> None:
    first_progress = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        first_progress.set()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: mcp.call_tool("switch_model", {"model": "fake-slow"},
                                                progress_callback=on_progress))
            await first_progress.wait()
            tg.cancel_scope.cancel()
        status = await call(mcp, "status")
        assert status["job"] is not None and status["job"]["profile"] == "fake-slow"
        while status["state"] != "ready":
            await anyio.sleep(0.2)
            status = await call(mcp, "status")
    assert status["model"]["id"] == "fake-slow" and status["last_switch"]["result"] == "ready"


async def test_text_from_the_container_is_raw_in_structured_content_and_escaped_in_text(
        mcp: Client, mcp_setup: Setup) -> None:
    # the daemon reads models.conf on every call: a profile whose server prints a bidi override
    mcp_setup.write(MCP_PROFILES + f"\n[liar]\nname = Liar\nmodel = tiny-a.gguf\nimage = {FAKE_IMAGE}\n"
                    "flags = --fake-say 'file gnp.\u202eexe'\n")
    with anyio.fail_after(30):
        await call(mcp, "switch_model", {"model": "liar"})
        result = await mcp.call_tool("tail_logs", {"lines": 200, "filter": "gnp"})
    assert not result.is_error and result.structured_content is not None
    assert any("file gnp.\u202eexe" in line["text"] for line in result.structured_content["lines"])
    text = text_of(result)
    assert "\u202e" not in text and "\\u202e" in text
    assert json.loads(text) == result.structured_content  # the same JSON, nothing a terminal acts on


async def test_two_models_serve_side_by_side_and_unload_model_stops_one(mcp: Client,
                                                                         mcp_setup: Setup) -> None:
    mcp_setup.write(MCP_PROFILES + SIDE_BY_SIDE)  # no GPU and a port Docker picks: they never conflict
    with anyio.fail_after(60):
        first = await call(mcp, "switch_model", {"model": "side-a"})
        second = await call(mcp, "switch_model", {"model": "side-b"})
    assert first["stops"] == second["stops"] == [] and "replaced" not in second["summary"]
    status = await call(mcp, "status")
    assert [m["id"] for m in status["models"]] == ["side-a", "side-b"]
    assert {(m["state"], m["engine"], m["gpus"]) for m in status["models"]} == {("ready", "local", "none")}
    lines = status["summary"].splitlines()
    assert lines[0] == "2 models (2 ready):"
    raw = await mcp.call_tool("status", {})  # an agent that reads text only gets the lines first
    assert isinstance(raw.content[0], TextContent) and raw.content[0].text.splitlines()[:2] == lines[:2]
    assert lines[1].startswith("- side-a (Side A): ready · engine local · gpus none · http://127.0.0.1:")
    models = await call(mcp, "list_models")
    by_id = {m["id"]: m for m in models["models"]}
    assert by_id["side-a"]["running"] == "ready" and by_id["fake-a"]["would_replace"] == []
    assert "side-b (Side B): ready on local/none" in models["summary"].splitlines()

    with anyio.fail_after(30):
        unloaded = await call(mcp, "unload_model", {"model": "side-a"})
    assert unloaded["result"] == "stopped" and unloaded["running"] == ["side-b"]
    assert unloaded["summary"] == "Side A (side-a) is stopped; still running: side-b"
    status = await call(mcp, "status")
    assert [m["id"] for m in status["models"] if m["state"] != "stopped"] == ["side-b"]

    again = await mcp.call_tool("unload_model", {"model": "side-a"})
    assert again.is_error
    assert "'side-a' is not running; running: side-b [reason: not_running]" in text_of(again)
    unknown = await mcp.call_tool("unload_model", {"model": "nope"})
    assert unknown.is_error and "running: side-b" in text_of(unknown)


async def test_switch_model_says_which_running_model_it_replaced(mcp: Client, mcp_setup: Setup) -> None:
    mcp_setup.write(MCP_PROFILES + SIDE_BY_SIDE)
    with anyio.fail_after(60):
        await call(mcp, "switch_model", {"model": "side-a"})
        await call(mcp, "switch_model", {"model": "fake-a"})
        listed = {m["id"]: m for m in (await call(mcp, "list_models"))["models"]}
        assert listed["fake-b"]["would_replace"] == ["fake-a"]
        switched = await call(mcp, "switch_model", {"model": "fake-b"})
    assert switched["stops"] == ["fake-a"] and switched["summary"].endswith("; it replaced fake-a")
    status = await call(mcp, "status")
    assert sorted(m["id"] for m in status["models"] if m["state"] == "ready") == ["fake-b", "side-a"]
