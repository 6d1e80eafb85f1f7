#!/usr/bin/env python3
"""A bench stand-in for llama-server that streams at a steady, chosen rate (bench/proxy_overhead.py).

Standard library only: bench/proxy_overhead.py builds it into a small image on
llm-mcp-test/base:bookworm (python3 3.11) and runs it as a profile's server, so it
sits behind the endpoint exactly as llama-server does. The test image's fake
(images/fake-llama-server) sleeps through the whole generation and then writes
every chunk at once, which says nothing about a relay's pacing; this one writes
one `chat.completion.chunk` per token on a fixed schedule:

    --bench-tps 200   one token every 5 ms per stream (token i at start + (i+1)/tps,
                      so a late wake-up catches up instead of slowing the stream)
    --bench-tps 0     unpaced: every chunk as fast as the socket takes them

Answers GET /health, /v1/health (200), /slots ([]: no busy slot), /props and
/v1/models like llama-server, and POST /v1/chat/completions (`max_tokens` tokens,
streamed with chunked transfer encoding on a kept-alive connection, as llama-server
does, or whole). Any other llama-server flag is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

CHUNK_FLUSH = 64  # unpaced: wait for the socket to drain every this many chunks


def option(argv: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


class Upstream:
    def __init__(self, tps: float, model: str) -> None:
        self.tps = tps
        self.model = model
        self.task = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                fields = (line.partition(":") for line in lines[1:] if line)
                headers = {k.strip().lower(): v.strip() for k, _, v in fields}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                await self.answer(method, target.split("?", 1)[0], body, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def answer(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path in ("/health", "/v1/health"):
            await send_json(writer, 200, {"status": "ok"})
        elif method == "GET" and path == "/slots":
            await send_json(writer, 200, [])
        elif method == "GET" and path == "/props":
            await send_json(writer, 200, {"n_ctx": 4096, "total_slots": 64, "model_alias": self.model,
                                          "build_info": "paced-upstream", "is_sleeping": False})
        elif method == "GET" and path in ("/v1/models", "/models"):
            await send_json(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        elif method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            try:
                request = json.loads(body or b"{}")
                tokens = max(1, int(request.get("max_tokens") or 16))
            except (ValueError, TypeError, AttributeError) as exc:
                await send_json(writer, 400, {"error": {"code": 400, "message": str(exc)}})
                return
            self.task += 1
            if request.get("stream"):
                await self.stream(writer, tokens)
            else:
                await asyncio.sleep(tokens / self.tps if self.tps else 0)
                await send_json(writer, 200, {
                    "id": f"chatcmpl-paced{self.task}", "object": "chat.completion", "model": self.model,
                    "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "tok " * tokens}}],
                    "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8}})
        else:
            await send_json(writer, 404, {"error": {"code": 404, "message": "File Not Found"}})

    async def stream(self, writer: asyncio.StreamWriter, tokens: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\nServer: llama.cpp\r\n\r\n")
        await writer.drain()
        # llama-server's chunk, field for field (one token of content)
        token = chunked(event({"choices": [{"finish_reason": None, "index": 0, "delta": {"content": " tok"}}],
                               "created": int(time.time()), "id": f"chatcmpl-paced{self.task}",
                               "model": self.model, "system_fingerprint": "b0-paced",
                               "object": "chat.completion.chunk"}))
        interval = 1 / self.tps if self.tps else 0.0
        start = time.monotonic()
        for i in range(tokens):
            if interval:
                delay = start + (i + 1) * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(token)
                await writer.drain()
            else:
                writer.write(token)
                if i % CHUNK_FLUSH == 0:
                    await writer.drain()
        elapsed = max(time.monotonic() - start, 1e-9)
        timings = {"predicted_n": tokens, "predicted_ms": elapsed * 1000,
                   "predicted_per_second": tokens / elapsed, "prompt_n": 8, "prompt_ms": 0.1}
        writer.write(chunked(event({"choices": [{"finish_reason": "length", "index": 0, "delta": {}}],
                                    "id": f"chatcmpl-paced{self.task}", "model": self.model,
                                    "object": "chat.completion.chunk", "timings": timings,
                                    "usage": {"completion_tokens": tokens, "prompt_tokens": 8}})))
        writer.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


def event(data: object) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def send_json(writer: asyncio.StreamWriter, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
                 b"Server: llama.cpp\r\n\r\n%s" % (status, len(data), data))
    await writer.drain()


async def main(argv: list[str]) -> None:
    upstream = Upstream(float(option(argv, "--bench-tps", "200")), option(argv, "--alias", "paced"))
    server = await asyncio.start_server(upstream.handle, option(argv, "--host", "127.0.0.1"),
                                        int(option(argv, "--port", "8080")))
    print(f"main: server is listening on port {option(argv, '--port', '8080')}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
