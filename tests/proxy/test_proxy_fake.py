"""The endpoint with the real openai and anthropic SDKs against fake llama-servers in real Docker.

The fake image loads in a fraction of a second and fails on demand (--fake-scenario oom),
so load on demand, the queue, failed loads, drains, cuts and the guard run in seconds.
What only the real server shows (completions, embeddings, Anthropic messages, a freed
slot on disconnect) is in test_proxy_real.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import FAKE_IMAGE, Setup, wait_until
from tests.proxy.conftest import PROXY_FAKES, Endpoint, serving

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
SAY: list[MessageParam] = [{"role": "user", "content": "hello"}]


_opened: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


@pytest.fixture(autouse=True)
async def _close_sdk_clients() -> AsyncIterator[None]:
    yield
    while _opened:
        await _opened.pop().close()


def oai(ep: Endpoint, key: str = "none", retries: int = 0) -> openai.AsyncOpenAI:
    _opened.append(openai.AsyncOpenAI(base_url=ep.v1, api_key=key, max_retries=retries, timeout=60))
    return _opened[-1]  # type: ignore[return-value]


def claude(ep: Endpoint, key: str = "none", retries: int = 0) -> anthropic.AsyncAnthropic:
    _opened.append(anthropic.AsyncAnthropic(base_url=ep.url, api_key=key, max_retries=retries, timeout=60))
    return _opened[-1]  # type: ignore[return-value]


def metric(text: str, name: str, **labels: str) -> float:
    wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(f"llm_mcp_{name}{wanted} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{wanted} in\n{text}")


def state(ep: Endpoint, model: str) -> str | None:
    return next((m["state"] for m in ep.daemon.core.status()["models"] if m["id"] == model), None)


async def test_openai_chat_by_alias_loads_the_model_on_demand_streams_and_counts(endpoint: Endpoint) -> None:
    client = oai(endpoint)
    listed = {m.id: m.model_extra or {} for m in (await client.models.list()).data}
    assert set(listed) == {"fake-a", "gpt-a", "fake-b", "fake-oom"}
    assert listed["gpt-a"] == {**listed["gpt-a"], "alias_of": "fake-a", "state": "stopped"}
    with anyio.fail_after(60):
        answer = await client.chat.completions.create(model="gpt-a", messages=HELLO, max_tokens=4)
    assert answer.choices[0].message.content == "fake fake fake fake"
    assert state(endpoint, "fake-a") == "ready"
    with anyio.fail_after(30):
        stream = await client.chat.completions.create(model="fake-a", messages=HELLO, max_tokens=3,
                                                      stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.split() == ["fake"] * 3
    listed = {m.id: m.model_extra or {} for m in (await client.models.list()).data}
    assert listed["fake-a"]["state"] == "ready" and listed["gpt-a"]["state"] == "ready"

    async with httpx.AsyncClient() as raw:
        text = (await raw.get(f"{endpoint.url}/metrics")).text
    assert metric(text, "requests_total", model="fake-a", route="chat") == 2
    assert metric(text, "loads_total", model="fake-a", result="ready") == 1
    assert metric(text, "queue_wait_seconds_count", model="fake-a") == 1  # the second went straight through
    assert metric(text, "time_to_first_token_seconds_count", model="fake-a") == 1
    assert metric(text, "generated_tokens_total", model="fake-a") == 7  # from llama-server's timings
    assert metric(text, "tokens_per_second", model="fake-a") == pytest.approx(200)
    assert metric(text, "requests_in_flight", model="fake-a") == 0
    anthropic_list = await claude(endpoint).models.list()
    assert {m.id for m in anthropic_list.data} >= {"fake-a", "gpt-a"}


async def test_a_streaming_request_may_see_the_load_as_comments_the_sdks_skip(endpoint: Endpoint) -> None:
    body = {"model": "fake-b", "messages": HELLO, "max_tokens": 2, "stream": True}
    async with httpx.AsyncClient(timeout=60) as raw:
        response = await raw.post(f"{endpoint.v1}/chat/completions", json=body,
                                  headers={"X-LLM-MCP-Loading-State": "true"})
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    first = response.text.split("\n\n")[0]
    assert first.startswith(": loading fake-b"), response.text
    assert response.text.rstrip().endswith("data: [DONE]")
    await endpoint.daemon.core.unload("fake-b")
    with anyio.fail_after(30):
        while state(endpoint, "fake-b") not in (None, "stopped"):
            await anyio.sleep(0.05)
    # the same through both SDKs: the comments are skipped, the answer parses
    stream = await oai(endpoint).chat.completions.create(
        model="fake-b", messages=HELLO, max_tokens=2, stream=True,
        extra_headers={"X-LLM-MCP-Loading-State": "true"})
    words = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]).split()
    assert words == ["fake"] * 2
    # anthropic: the SSE comments reach its decoder too (the fake has no /v1/messages: its 404 comes
    # back as an error event, raised by the SDK with llama-server's own body)
    await endpoint.daemon.core.unload("fake-b")
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude(endpoint).messages.stream(model="fake-b", max_tokens=2, messages=SAY,
                                                    extra_headers={"X-LLM-MCP-Loading-State": "true"}) as s:
            async for _ in s:
                pass
    assert "File Not Found" in str(caught.value)


async def test_an_unknown_model_is_a_404_naming_the_valid_ids_in_each_format(endpoint: Endpoint) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai(endpoint).chat.completions.create(model="gpt-5", messages=HELLO)
    body: Any = caught.value.body
    assert body["code"] == "unknown_model" and body["type"] == "not_found_error"
    assert body["valid"] == ["fake-a", "gpt-a", "fake-b", "fake-oom"]
    assert "fake-a" in body["message"]
    with pytest.raises(anthropic.NotFoundError) as refused:
        await claude(endpoint).messages.create(model="claude-9", max_tokens=4, messages=SAY)
    assert refused.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": refused.value.body["error"]["message"],  # type: ignore[index]
        "reason": "unknown_model", "hint": refused.value.body["error"]["hint"],  # type: ignore[index]
        "valid": ["fake-a", "gpt-a", "fake-b", "fake-oom"]}}
    assert endpoint.daemon.core.status()["jobs"] == []  # nothing was asked of the scheduler


async def test_a_failed_load_reaches_every_waiting_request_in_its_format_and_the_model_before_returns(
    endpoint: Endpoint,
) -> None:
    with anyio.fail_after(60):
        await oai(endpoint).chat.completions.create(model="fake-a", messages=HELLO, max_tokens=2)
    results: list[Exception] = []

    async def ask_openai() -> None:
        try:  # default retries: x-should-retry: false keeps the SDK from loading it again
            await oai(endpoint, retries=2).chat.completions.create(model="fake-oom", messages=HELLO)
        except openai.APIStatusError as exc:
            results.append(exc)

    async def ask_anthropic() -> None:
        try:
            await claude(endpoint, retries=2).messages.create(model="fake-oom", max_tokens=4, messages=SAY)
        except anthropic.APIStatusError as exc:
            results.append(exc)

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ask_openai)
                tg.start_soon(ask_anthropic)
    assert len(results) == 6
    for exc in results:
        assert getattr(exc, "status_code", None) == 503
        body: Any = exc.body  # type: ignore[attr-defined]
        error = body if isinstance(exc, openai.APIStatusError) else body["error"]
        if isinstance(exc, anthropic.APIStatusError):
            assert body["type"] == "error" and error["type"] == "overloaded_error"
        else:
            assert error["code"] == "out_of_memory" and error["type"] == "server_error"
        assert error["reason"] == "out_of_memory" and error["restored"] is True
        assert "n_gpu_layers" in error["hint"] and error["hint"] in error["message"]
        assert any("out of memory" in line for line in error["log_lines"][:3]), error["log_lines"]
    assert state(endpoint, "fake-a") == "ready"  # rolled back
    answer = await oai(endpoint).chat.completions.create(model="fake-a", messages=HELLO, max_tokens=2)
    assert answer.choices[0].message.content == "fake fake"
    async with httpx.AsyncClient() as raw:
        text = (await raw.get(f"{endpoint.url}/metrics")).text
    assert metric(text, "loads_total", model="fake-oom", result="failed") == 1  # one load for all six
    assert metric(text, "request_errors_total", model="fake-oom", reason="out_of_memory") == 6


async def test_keys_host_origin_and_body_size_are_checked_before_anything_loads(setup: Setup) -> None:
    keys = setup.root / "keys"
    keys.write_text("sk-from-file\n")
    keys.chmod(0o600)
    setup.write(PROXY_FAKES + f"\n[proxy]\napi_keys = sk-inline\napi_keys_file = {keys}\n"
                "max_body_bytes = 4096\n")
    async with serving(setup) as ep:
        with pytest.raises(openai.AuthenticationError) as caught:
            await oai(ep, key="sk-wrong").chat.completions.create(model="fake-a", messages=HELLO)
        assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
        with pytest.raises(anthropic.AuthenticationError):
            await claude(ep, key="sk-wrong").messages.create(model="fake-a", max_tokens=2, messages=SAY)
        assert ep.daemon.core.status()["jobs"] == [] and state(ep, "fake-a") is None
        async with httpx.AsyncClient(timeout=60) as raw:
            missing = await raw.get(f"{ep.v1}/models")
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert (await raw.get(f"{ep.url}/health")).status_code == 200  # public, like llama-server's
            assert (await raw.get(f"{ep.url}/metrics", headers={"authorization": "Bearer sk-inline"})
                    ).status_code == 200
            rebound = await raw.get(f"{ep.v1}/models", headers={"host": "evil.example:80",
                                                                "authorization": "Bearer sk-inline"})
            assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "forbidden_host"
            page = await raw.post(f"{ep.url}/v1/messages", json={"model": "fake-a"},
                                  headers={"origin": "http://evil.example", "x-api-key": "sk-inline"})
            assert page.status_code == 403
            assert page.json()["type"] == "error" and page.json()["error"]["type"] == "permission_error"
            long = [{"role": "user", "content": "x" * 5000}]
            big = await raw.post(f"{ep.v1}/chat/completions", headers={"authorization": "Bearer sk-inline"},
                                 json={"model": "fake-a", "messages": long})
            assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
        assert ep.daemon.core.status()["jobs"] == [] and state(ep, "fake-a") is None
        with anyio.fail_after(60):
            answer = await oai(ep, key="sk-from-file").chat.completions.create(
                model="fake-a", messages=HELLO, max_tokens=2)
        assert answer.choices[0].message.content == "fake fake"
        keys.write_text("sk-rotated\n")  # read again when it changes: no restart
        with pytest.raises(openai.AuthenticationError):
            await oai(ep, key="sk-from-file").chat.completions.create(model="fake-a", messages=HELLO)
        # upstream errors pass through unchanged: the fake has no /v1/messages
        with pytest.raises(anthropic.NotFoundError) as passed:
            await claude(ep, key="sk-rotated").messages.create(model="fake-a", max_tokens=2, messages=SAY)
        assert passed.value.body == {"error": {"code": 404, "message": "File Not Found",
                                               "type": "not_found_error"}}


SLOW = f"""
[fake-slow]
name = Fake Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 3
"""


async def test_a_full_queue_and_a_load_past_the_queue_timeout_are_503_with_retry_after(setup: Setup) -> None:
    setup.write(PROXY_FAKES + SLOW + "\n[proxy]\nqueue_limit = 1\n")
    async with serving(setup) as ep, httpx.AsyncClient(timeout=60) as raw:
        body = {"model": "fake-slow", "messages": HELLO, "max_tokens": 2}
        answers: list[httpx.Response] = []

        async def ask() -> None:
            answers.append(await raw.post(f"{ep.v1}/chat/completions", json=body))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(ask)
        assert sorted(a.status_code for a in answers) == [200, 503, 503]
        for full in (a for a in answers if a.status_code == 503):
            assert full.json()["error"]["code"] == "queue_full"
            assert full.headers["retry-after"] == "5" and full.headers["x-should-retry"] == "true"
        await ep.daemon.core.unload("fake-slow")
        with anyio.fail_after(30):
            while state(ep, "fake-slow") not in (None, "stopped"):
                await anyio.sleep(0.05)
        # models.conf edits count at once: a queue timeout shorter than the load
        setup.write(PROXY_FAKES + SLOW + "\n[proxy]\nqueue_timeout = 1\n")
        late = await raw.post(f"{ep.v1}/chat/completions", json=body)
        assert late.status_code == 503 and late.json()["error"]["code"] == "queue_timeout", late.text
        assert int(late.headers["retry-after"]) >= 1


async def test_a_stop_drains_a_request_in_flight_and_a_forced_one_ends_it_with_an_error(setup: Setup) -> None:
    # 10 tokens at 5 tokens/s: two seconds in flight
    setup.write(PROXY_FAKES.replace("--fake-tps 200", "--fake-tps 5"))
    async with serving(setup) as ep:
        core = ep.daemon.core
        client = oai(ep)
        with anyio.fail_after(60):
            await client.chat.completions.create(model="fake-a", messages=HELLO, max_tokens=1)
        answers: list[Any] = []

        async def ask(stream: bool = False) -> None:
            try:
                if stream:
                    chunks = await client.chat.completions.create(
                        model="fake-a", messages=HELLO, max_tokens=10, stream=True,
                        extra_headers={"X-LLM-MCP-Loading-State": "true"})
                    answers.append("".join([c.choices[0].delta.content or "" async for c in chunks
                                            if c.choices]))
                else:
                    answer = await client.chat.completions.create(model="fake-a", messages=HELLO,
                                                                  max_tokens=10)
                    answers.append(answer.choices[0].message.content)
            except openai.APIError as exc:
                answers.append(exc)

        async with anyio.create_task_group() as tg:  # a plain stop waits for the answer
            tg.start_soon(ask)
            await wait_until(lambda: core.requests.inflight("fake-a") == 1, 10)
            job = await core.unload("fake-a")
            with anyio.fail_after(30):
                await job.done.wait()
        assert answers == [" ".join(["fake"] * 10)] and job.result == "stopped"

        with anyio.fail_after(60):
            await client.chat.completions.create(model="fake-a", messages=HELLO, max_tokens=1)
        answers.clear()
        async with anyio.create_task_group() as tg:  # a forced stop cuts: an error, not a closed socket
            tg.start_soon(ask)
            tg.start_soon(ask, True)  # a stream that has begun (loading state: its 200 went out at once)
            await wait_until(lambda: core.requests.inflight("fake-a") == 2, 10)
            job = await core.unload("fake-a", force=True)
            with anyio.fail_after(30):
                await job.done.wait()
        assert len(answers) == 2 and all(isinstance(a, openai.APIError) for a in answers), answers
        for exc in answers:
            assert "was stopped" in str(exc) and "retry the request" in str(exc)
        plain = next(a for a in answers if isinstance(a, openai.APIStatusError))
        assert plain.status_code == 503 and plain.body["code"] == "model_stopped"  # type: ignore[index]


async def test_ten_clients_asking_three_conflicting_models_at_random_each_get_an_answer_or_a_clean_error(
    setup: Setup,
) -> None:
    # the three fakes share the default port: any two conflict, so the scheduler swaps all along
    setup.write(PROXY_FAKES.replace("--fake-scenario oom", "--fake-tps 200"))
    outcomes: list[str] = []
    rng = random.Random(9)
    async with serving(setup) as ep, httpx.AsyncClient(timeout=None) as raw:
        async def client(n: int) -> None:
            for _ in range(3):
                model = rng.choice(["fake-a", "gpt-a", "fake-b", "fake-oom"])
                streaming = rng.random() < 0.5
                body = {"model": model, "messages": HELLO, "max_tokens": 3, "stream": streaming}
                response = await raw.post(f"{ep.v1}/chat/completions", json=body)
                if response.status_code == 200 and streaming:
                    events = [e for e in response.text.split("\n\n") if e.startswith("data: ")]
                    assert events[-1] == "data: [DONE]", response.text
                    last = json.loads(events[-2][6:])
                    assert "error" not in last, last
                    outcomes.append("ok")
                elif response.status_code == 200:
                    assert response.json()["choices"][0]["message"]["content"] == "fake fake fake"
                    outcomes.append("ok")
                else:
                    error = response.json()["error"]
                    assert error["message"] and error["code"], response.text
                    outcomes.append(error["code"])

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(client, n)
        metrics = (await raw.get(f"{ep.url}/metrics")).text
    loads = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("llm_mcp_loads_total{"))
    assert len(outcomes) == 30
    # turns (Core.turn_left): 6-7 loads measured here; one load per request or so (16) without them
    assert loads <= 12, metrics
    assert outcomes.count("ok") >= 27, outcomes  # a forced cut is the only acceptable error, and rare


BESIDE = f"""
[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}
gpus = none
port = auto

[fake-slow]
name = Fake Slow
model = tiny-b.gguf
image = {FAKE_IMAGE}
gpus = none
port = auto
flags = --fake-load-seconds 4
"""


async def test_a_ready_model_answers_at_once_while_another_loads_beside_it(setup: Setup) -> None:
    setup.write(BESIDE)  # no shared GPU, no shared port: the two run side by side
    async with serving(setup) as ep, httpx.AsyncClient(timeout=60) as raw:
        body = {"messages": HELLO, "max_tokens": 2}
        with anyio.fail_after(60):
            assert (await raw.post(f"{ep.v1}/chat/completions", json={**body, "model": "fake-a"})
                    ).status_code == 200
        slow: list[httpx.Response] = []
        async with anyio.create_task_group() as tg:
            async def load_slow() -> None:
                slow.append(await raw.post(f"{ep.v1}/chat/completions", json={**body, "model": "fake-slow"}))

            tg.start_soon(load_slow)
            await wait_until(lambda: ep.daemon.core.requests.queued("fake-slow") == 1, 10)
            await wait_until(lambda: state(ep, "fake-slow") == "loading", 30)
            began = anyio.current_time()
            fast = await raw.post(f"{ep.v1}/chat/completions", json={**body, "model": "fake-a"})
            took = anyio.current_time() - began
            assert fast.status_code == 200 and took < 1.0, (fast.text, took)
            assert state(ep, "fake-slow") == "loading" and not slow  # still loading meanwhile
        assert slow[0].status_code == 200 and state(ep, "fake-a") == "ready"


async def test_a_client_that_gives_up_while_queued_leaves_the_queue_and_the_load_goes_on(
    setup: Setup,
) -> None:
    setup.write(PROXY_FAKES + SLOW)
    async with serving(setup) as ep:
        requests = ep.daemon.core.requests
        body = {"model": "fake-slow", "messages": HELLO, "max_tokens": 2}
        async with httpx.AsyncClient(timeout=60) as raw:
            async with anyio.create_task_group() as tg:
                async def impatient() -> None:
                    with anyio.move_on_after(30):
                        await raw.post(f"{ep.v1}/chat/completions", json=body)
                    raise AssertionError("answered though it should have been cancelled")

                scope = tg.cancel_scope
                tg.start_soon(impatient)
                await wait_until(lambda: requests.queued("fake-slow") == 1, 10)
                scope.cancel()  # the client hangs up while it waits
            await wait_until(lambda: requests.queued("fake-slow") == 0, 2)
            assert [j["profile"] for j in ep.daemon.core.status()["jobs"]] == ["fake-slow"]  # still loading
            await wait_until(lambda: state(ep, "fake-slow") == "ready", 30)
            assert requests.inflight("fake-slow") == 0
            answer = await raw.post(f"{ep.v1}/chat/completions", json=body)
            assert answer.status_code == 200
