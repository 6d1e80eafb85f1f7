"""Two clients, two conflicting models: a long generation is never cut for the other client's
load (it waits), unless the drain timeout passes, and then the cut client gets an error, not a
closed socket. And a load that fails on the REAL image (a corrupt model file) reaches every
waiting request in its API's format while the model before comes back.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import anyio
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import REAL_IMAGE, Setup
from tests.proxy.conftest import PROXY_FAKES, Endpoint, serving

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
SLOW = PROXY_FAKES.replace("flags = --fake-tps 200\n", "flags = --fake-tps 10\n", 1)  # fake-a: 10 tokens/s


async def _long_stream_then_other_model(ep: Endpoint) -> tuple[list[Any], float, float]:
    """Client 1 streams 30 tokens (3 s) from fake-a; while that is in flight, client 2 asks fake-b
    (same port: they conflict). Returns client 1's outcome, when its stream ended and when client 2
    got its answer (monotonic). (The fake server generates first and then sends every chunk, so
    "in flight" is the endpoint's count, not a first chunk.)"""
    async with openai.AsyncOpenAI(base_url=ep.v1, api_key="none", max_retries=0, timeout=120) as client:
        with anyio.fail_after(60):
            await client.chat.completions.create(model="fake-a", messages=HELLO, max_tokens=1)  # loaded
        first: list[Any] = []
        ended: list[float] = []
        answered: list[float] = []

        async def stream_a() -> None:
            try:
                chunks = await client.chat.completions.create(model="fake-a", messages=HELLO,
                                                              max_tokens=30, stream=True)
                text = []
                async for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        text.append(chunk.choices[0].delta.content)
                first.append("".join(text))
            except openai.APIError as exc:
                first.append(exc)
            finally:
                ended.append(time.monotonic())

        async def ask_b() -> None:
            while ep.daemon.core.requests.inflight("fake-a") < 1:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)
            answer = await client.chat.completions.create(model="fake-b", messages=HELLO, max_tokens=2)
            assert answer.choices[0].message.content == "fake fake"
            answered.append(time.monotonic())

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream_a)
                tg.start_soon(ask_b)
        return first, ended[0], answered[0]


async def test_the_other_model_waits_until_the_long_generation_ends_uncut(setup: Setup) -> None:
    setup.write(SLOW.replace("name = Fake B\n", "name = Fake B\ndrain_timeout = 60\n"))  # the load's
    async with serving(setup) as ep:
        outcome, ended, answered = await _long_stream_then_other_model(ep)
    assert len(outcome) == 1 and isinstance(outcome[0], str), outcome
    assert outcome[0].split() == ["fake"] * 30  # every token: no truncation
    assert answered > ended  # fake-b loaded only after fake-a's stream ended


async def test_past_a_short_drain_timeout_the_long_generation_gets_a_clear_error(setup: Setup) -> None:
    setup.write(SLOW.replace("name = Fake B\n", "name = Fake B\ndrain_timeout = 0.5\n"))
    async with serving(setup) as ep:
        outcome, _ended, _answered = await _long_stream_then_other_model(ep)
    assert len(outcome) == 1 and isinstance(outcome[0], openai.APIError), outcome
    message = str(outcome[0])
    assert "Fake A was stopped to load Fake B" in message and "drain timeout" in message, message


def _real(profile_id: str, model: str) -> str:
    return (f"\n[{profile_id}]\nname = {profile_id.title()}\nmodel = {model}\nimage = {REAL_IMAGE}\n"
            "ctx_size = 2048\nn_gpu_layers = 0\nflags = --threads 1 --parallel 1 --no-warmup\n")


async def test_a_corrupt_model_file_fails_every_waiting_request_in_its_format_and_restores_the_model(
    setup: Setup, real_image: str
) -> None:
    assert (setup.models / "corrupt.gguf").is_file()  # the models fixture's: a GGUF llama.cpp refuses
    setup.write(_real("real-a", "tiny-a.gguf") + _real("broken", "corrupt.gguf"))
    async with serving(setup) as ep, \
            openai.AsyncOpenAI(base_url=ep.v1, api_key="none", max_retries=0, timeout=120) as oai, \
            anthropic.AsyncAnthropic(base_url=ep.url, api_key="none", max_retries=0,
                                     timeout=120) as claude:
        with anyio.fail_after(120):
            await oai.chat.completions.create(model="real-a", messages=HELLO, max_tokens=1)
        errors: list[Exception] = []

        async def ask_openai() -> None:
            try:
                await oai.chat.completions.create(model="broken", messages=HELLO, max_tokens=1)
            except openai.APIStatusError as exc:
                errors.append(exc)

        async def ask_anthropic() -> None:
            try:
                await claude.messages.create(model="broken", max_tokens=1,
                                             messages=[{"role": "user", "content": "hello"}])
            except anthropic.APIStatusError as exc:
                errors.append(exc)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(ask_openai)
                    tg.start_soon(ask_anthropic)
        assert len(errors) == 4, errors
        for exc in errors:
            body: Any = exc.body  # type: ignore[attr-defined]
            if isinstance(exc, openai.APIStatusError):
                error = body.get("error", body)
                assert error["code"] and error["message"] and error["type"], body
                text = str(error)
            else:
                assert body["type"] == "error" and body["error"]["message"], body
                text = str(body)
            assert "model_corrupt" in text and "hint" in text.lower(), text  # reason code and hint
        running = [m["id"] for m in ep.daemon.core.status()["models"] if m["state"] == "ready"]
        assert running == ["real-a"]  # the model before came back
        answer = await oai.chat.completions.create(model="real-a", messages=HELLO, max_tokens=1)
        assert answer.choices
