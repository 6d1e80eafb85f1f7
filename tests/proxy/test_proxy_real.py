"""The endpoint in front of the real llama-server image (tiny models), through the real SDKs.

Chat, completions and Anthropic messages (llama-server answers /v1/messages itself),
streamed and not; embeddings from a profile started with --embeddings; models swapped
on demand by name alone; and a client that hangs up mid-stream, after which the
server's slot is idle within a second (the upstream request was closed, not left
generating).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import REAL_IMAGE, Setup
from tests.proxy.conftest import Endpoint, serving

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.real_llama]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
SAY: list[MessageParam] = [{"role": "user", "content": "hello"}]


def profile(profile_id: str, model: str, *, ctx: int = 2048, flags: str = "") -> str:
    return (f"\n[{profile_id}]\nname = {profile_id.title()}\nmodel = {model}\nimage = {REAL_IMAGE}\n"
            f"ctx_size = {ctx}\nn_gpu_layers = 0\nflags = --threads 1 --parallel 1 --no-warmup {flags}\n")


# All on the default port: any two conflict, so each request for another model swaps.
REAL = (profile("real-a", "tiny-a.gguf", ctx=32768)
        + "aliases = small\n"
        + profile("real-b", "tiny-b.gguf")
        + profile("real-emb", "tiny-a.gguf", flags="--embeddings --pooling mean"))


@pytest.fixture
async def real(setup: Setup, real_image: str) -> AsyncIterator[Endpoint]:
    setup.write(REAL)
    async with serving(setup) as ep:
        yield ep


@pytest.fixture
async def sdks(real: Endpoint) -> AsyncIterator[tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]]:
    async with openai.AsyncOpenAI(base_url=real.v1, api_key="none", max_retries=0, timeout=120) as oai, \
            anthropic.AsyncAnthropic(base_url=real.url, api_key="none", max_retries=0, timeout=120) as claude:
        yield oai, claude


def running(ep: Endpoint) -> list[str]:
    return sorted(m["id"] for m in ep.daemon.core.status()["models"]
                  if m["state"] not in ("stopped", "failed"))


async def test_chat_completions_embeddings_and_messages_through_both_sdks(
    real: Endpoint, sdks: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    oai, claude = sdks
    with anyio.fail_after(120):
        chat = await oai.chat.completions.create(model="small", messages=HELLO, max_tokens=8, temperature=0,
                                                 extra_body={"ignore_eos": True})
        assert chat.choices[0].message.role == "assistant" and chat.usage is not None
        assert chat.usage.completion_tokens >= 1
        stream = await oai.chat.completions.create(model="real-a", messages=HELLO, max_tokens=8, stream=True)
        chunks = [c async for c in stream]
        assert any(c.choices and c.choices[0].finish_reason in ("length", "stop") for c in chunks)
        completion = await oai.completions.create(model="real-a", prompt="Once upon", max_tokens=6)
        assert completion.choices[0].text is not None and completion.choices[0].finish_reason
        stream_ = await oai.completions.create(model="real-a", prompt="Once", max_tokens=6, stream=True,
                                               extra_body={"ignore_eos": True})  # random weights
        pieces = [c async for c in stream_]
        assert (pieces[-1].model_extra or {})["timings"]["predicted_n"] == 6  # a chunk may carry several
        message = await claude.messages.create(model="real-a", max_tokens=8, messages=SAY,
                                               extra_body={"ignore_eos": True})
        assert message.type == "message" and message.role == "assistant"
        assert message.content and message.content[0].type == "text"
        async with claude.messages.stream(model="real-a", max_tokens=8, messages=SAY) as s:
            final = await s.get_final_message()
        assert final.stop_reason in ("max_tokens", "end_turn")
        assert running(real) == ["real-a"]
        vectors = await oai.embeddings.create(model="real-emb", input=["one", "two"])
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 64  # n_embd of the tiny model
        assert running(real) == ["real-emb"]
    async with httpx.AsyncClient() as raw:
        text = (await raw.get(f"{real.url}/metrics")).text
    assert 'llm_mcp_requests_total{model="real-a",route="messages"} 2' in text
    assert 'llm_mcp_requests_total{model="real-emb",route="embeddings"} 1' in text
    assert 'llm_mcp_generated_tokens_total{model="real-a"}' in text  # llama-server's timings were read


async def test_model_a_then_b_then_a_by_name_alone_each_loading_on_demand(
    real: Endpoint, sdks: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    oai, _ = sdks
    seen: list[tuple[str, str, list[str]]] = []
    with anyio.fail_after(180):
        for model in ("real-a", "real-b", "real-a"):
            began = time.monotonic()
            chat = await oai.chat.completions.create(model=model, messages=HELLO, max_tokens=4)
            seen.append((model, chat.model, running(real)))
            assert time.monotonic() - began < 60
    assert [(m, r) for m, _, r in seen] == [("real-a", ["real-a"]), ("real-b", ["real-b"]),
                                            ("real-a", ["real-a"])]
    async with httpx.AsyncClient() as raw:
        text = (await raw.get(f"{real.url}/metrics")).text
    assert 'llm_mcp_loads_total{model="real-a",result="ready"} 2' in text
    assert 'llm_mcp_loads_total{model="real-b",result="ready"} 1' in text
    assert 'llm_mcp_queue_wait_seconds_count{model="real-a"} 2' in text


async def test_a_client_that_hangs_up_mid_stream_frees_the_server_slot_within_a_second(
    real: Endpoint,
) -> None:
    core = real.daemon.core
    body: dict[str, Any] = {"model": "real-a", "prompt": "Once", "max_tokens": 30000, "ignore_eos": True,
                            "stream": True}

    async def busy(raw: httpx.AsyncClient) -> bool:
        slots = (await raw.get(f"{real.url}/upstream/real-a/slots")).json()  # the pass-through
        return any(s["is_processing"] for s in slots)

    async with httpx.AsyncClient(timeout=120) as raw:
        with anyio.fail_after(120):
            await raw.post(f"{real.v1}/completions", json={**body, "stream": False, "max_tokens": 1})
        async with raw.stream("POST", f"{real.v1}/completions", json=body) as response:
            assert response.status_code == 200
            chunks = response.aiter_bytes()  # kept: a generator dropped by `break` closes the connection
            got = 0
            while got < 20_000:
                got += len(await chunks.__anext__())
            assert await busy(raw), "the generation should still be running"
            assert core.requests.inflight("real-a") == 1
        hung_up = time.monotonic()  # leaving the block closed the connection mid-stream
        with anyio.fail_after(5):
            while await busy(raw):
                await anyio.sleep(0.05)
        freed = time.monotonic() - hung_up
        assert freed < 1.0, f"the slot was busy {freed:.2f} s after the client left"
        with anyio.fail_after(5):
            while core.requests.inflight("real-a"):
                await anyio.sleep(0.02)


async def test_a_forced_unload_ends_an_anthropic_stream_with_an_error_event_not_a_closed_socket(
    real: Endpoint, sdks: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    _, claude = sdks
    core = real.daemon.core
    events: list[str] = []
    with anyio.fail_after(120):
        stream = await claude.messages.create(model="real-a", max_tokens=30000, messages=SAY, stream=True,
                                              extra_body={"ignore_eos": True, "temperature": 0})
        with pytest.raises(anthropic.APIError) as caught:
            async for event in stream:
                events.append(event.type)
                if len(events) == 20:
                    assert core.requests.inflight("real-a") == 1
                    await core.unload("real-a", force=True)
    assert "content_block_delta" in events
    assert "was stopped" in str(caught.value) and "retry the request" in str(caught.value)
    body: Any = caught.value.body
    assert body["error"]["reason"] == "model_stopped"


async def test_every_anthropic_stream_begins_with_message_start_though_llama_server_drops_it_at_times(
    real: Endpoint, sdks: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]
) -> None:
    # this llama-server build leaves message_start out of about 1 stream in 8 (seen 5 in 20, direct);
    # the SDK's stream helper then fails (no message to build on): the endpoint puts one in
    _, claude = sdks
    with anyio.fail_after(120):
        for _ in range(16):
            async with claude.messages.stream(model="real-a", max_tokens=4, messages=SAY) as s:
                final = await s.get_final_message()
            assert final.role == "assistant" and final.model == "real-a"
