#!/usr/bin/env python3
"""A stand-in for llama.cpp's llama-server, for fast lifecycle tests and fault injection.

Standard library only (it runs in the Debian base image's python3). It accepts
llama-server's argv, prints the lines the real server prints while loading, binds
the port first (so /health answers 503 while "loading" and 200 when ready), serves
/health, /v1/health, /slots, /props, /v1/models, /metrics and
POST /v1/chat/completions, and fails on demand. Flags that start with --fake-
choose the behaviour; see images/README.md for the list.

Logs go to stderr with the real server's prefix (``0.00.004.555 I srv  ...``),
like the real llama-server; the ``fake line N`` lines go to stdout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

T0 = time.monotonic()

# llama-server flags that take a value (accepted; the few the fake uses are read in parse()).
_VALUE_FLAGS = """
    -m --model --host --port -c --ctx-size -ngl --n-gpu-layers --gpu-layers -ot
    --override-tensor -b --batch-size -ub --ubatch-size -a --alias -np --parallel -t
    --threads -tb --threads-batch -fa --flash-attn -lv --verbosity --log-verbosity -ctk
    --cache-type-k -ctv --cache-type-v --api-key --api-key-file --fit -dev --device -s
    --seed --temp --top-k --top-p --min-p --repeat-penalty --presence-penalty
    --frequency-penalty -n --n-predict --keep --rope-freq-base --rope-freq-scale
    --rope-scaling -ts --tensor-split -mg --main-gpu -sm --split-mode --chat-template
    --chat-template-file --reasoning-format --reasoning-budget --mmproj --cache-reuse -to
    --timeout --threads-http --log-file --numa --slot-save-path --load-mode -ncmoe
    --n-cpu-moe -md --model-draft -ngld --n-gpu-layers-draft --draft-max --draft-min -cd
    --ctx-size-draft --defrag-thold -dt --lora --path --api-prefix --grammar --pooling
    --slot-prompt-similarity --sleep-idle-seconds
"""
VALUE_FLAGS = frozenset(_VALUE_FLAGS.split())
# llama-server flags without a value.
_BOOL_FLAGS = """
    --jinja --no-jinja --no-warmup --metrics --slots --no-slots --props -cb --cont-batching
    -nocb --no-cont-batching -v --verbose --log-disable --log-timestamps --log-prefix -cmoe
    --cpu-moe -nkvo --no-kv-offload --swa-full --embedding --embeddings --reranking
    --no-webui --webui --check-tensors --no-context-shift --context-shift -kvu --kv-unified
    --no-kv-unified --no-repack --no-host --offline
"""
BOOL_FLAGS = frozenset(_BOOL_FLAGS.split())
SCENARIOS = ("ok", "slow", "stall", "crash-load", "oom", "crash-after-ready", "bad-flag")
N_LAYERS_DEFAULT = 49  # "offloaded N/49 layers": a 48-block model plus its output layer


def ts() -> str:
    us = int((time.monotonic() - T0) * 1e6)
    minutes, rest = divmod(us, 60_000_000)
    seconds, rest = divmod(rest, 1_000_000)
    ms, us = divmod(rest, 1000)
    return f"{minutes}.{seconds:02d}.{ms:03d}.{us:03d}"


def log(level: str, text: str) -> None:
    """One log line to stderr, prefixed like the real server (timestamp, level letter)."""
    print(f"{ts()} {level} {text}", file=sys.stderr, flush=True)


def srv(func: str, text: str, level: str = "I") -> None:
    log(level, f"srv  {func:>12.12}: {text}")


def die(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Options:
    def __init__(self) -> None:
        self.model: str | None = None
        self.host = "127.0.0.1"
        self.port = 8080
        self.ctx_size = 4096
        self.n_gpu_layers: int | None = None
        self.parallel = 4
        self.alias: str | None = None
        self.metrics = False
        self.scenario = "ok"
        self.load_seconds: float | None = None
        self.exit_after = 1.0
        self.lines = 0
        self.line_rate = 10.0
        self.line_bytes = 0
        self.line_fill = ""
        self.busy_seconds = 0.0
        self.ignore_sigterm = False
        self.tps = 100.0
        self.n_layers = N_LAYERS_DEFAULT
        self.say: list[str] = []


def invalid(arg: str) -> None:
    # What the real server prints for an unknown flag.
    print(f"error: invalid argument: {arg}", file=sys.stderr, flush=True)
    die(1)


def bad_value(arg: str, why: str) -> None:
    # What the real server prints for a flag without its value, or a value it cannot use.
    print(f'error while handling argument "{arg}": {why}', file=sys.stderr, flush=True)
    print("\nusage:\n\nto show complete usage, run with -h", file=sys.stderr, flush=True)
    die(1)


def parse(argv: list[str]) -> Options:
    o = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        takes_value = name in VALUE_FLAGS or (
            name.startswith("--fake-") and name not in ("--fake-ignore-sigterm",)
        )
        if name == "--fake-ignore-sigterm":
            o.ignore_sigterm = True
            i += 1
            continue
        if name in BOOL_FLAGS and not eq:
            if name == "--metrics":
                o.metrics = True
            i += 1
            continue
        if not takes_value:
            invalid(arg)
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
        else:
            bad_value(arg, "expected value for argument")
        try:
            if name in ("-m", "--model"):
                o.model = value
            elif name == "--host":
                o.host = value
            elif name == "--port":
                o.port = int(value)
            elif name in ("-c", "--ctx-size"):
                o.ctx_size = int(value)
            elif name in ("-ngl", "--n-gpu-layers", "--gpu-layers"):
                o.n_gpu_layers = None if value in ("auto", "all") else int(value)
            elif name in ("-np", "--parallel"):
                o.parallel = max(1, int(value))
            elif name in ("-a", "--alias"):
                o.alias = value
            elif name in ("-fa", "--flash-attn"):
                if value not in ("on", "off", "auto"):
                    bad_value(arg, f"unknown value for --flash-attn: '{value}'")
            elif name == "--fake-scenario":
                if value not in SCENARIOS:
                    bad_value(arg, f"unknown scenario '{value}' (valid: {', '.join(SCENARIOS)})")
                o.scenario = value
            elif name == "--fake-load-seconds":
                o.load_seconds = float(value)
            elif name == "--fake-exit-after":
                o.exit_after = float(value)
            elif name == "--fake-lines":
                o.lines = int(value)
            elif name == "--fake-line-rate":
                o.line_rate = float(value)
            elif name == "--fake-line-bytes":
                o.line_bytes = int(value)  # pad each fake line to this many bytes
            elif name == "--fake-line-fill":
                # put into each fake line; backslash escapes (\r, \x1c, \u2028) are decoded
                o.line_fill = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
            elif name == "--fake-busy-seconds":
                o.busy_seconds = float(value)
            elif name == "--fake-tps":
                o.tps = float(value)
            elif name == "--fake-layers":
                o.n_layers = int(value)
            elif name == "--fake-say":
                o.say.append(value)  # a line printed during the load; the load goes on
            elif name.startswith("--fake-"):
                invalid(arg)
        except ValueError:
            bad_value(arg, f"invalid value '{value}'")
    if o.load_seconds is None:
        o.load_seconds = 3.0 if o.scenario == "slow" else 0.2
    return o


class State:
    def __init__(self, o: Options) -> None:
        self.o = o
        self.ready = False
        self.busy_until = 0.0
        self.lock = threading.Lock()
        self.processing: set[int] = set()
        self.task = 0
        self.tokens_predicted = 0
        self.requests = 0


def model_name(o: Options) -> str:
    return o.alias or (o.model or "")


class Handler(BaseHTTPRequestHandler):
    server_version = "llama.cpp"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: object) -> None:
        pass  # the real server does not log requests at default verbosity

    def send_json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(data)

    def loading(self) -> bool:
        if self.state.ready:
            return False
        self.send_json(
            503,
            {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}},
        )
        return True

    def not_found(self) -> None:
        self.send_json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

    def do_GET(self) -> None:
        st, o = self.state, self.state.o
        path = self.path.split("?", 1)[0]
        if path in ("/health", "/v1/health"):
            if not self.loading():
                self.send_json(200, {"status": "ok"})
        elif path == "/slots":
            if self.loading():
                return
            busy = time.monotonic() < st.busy_until
            with st.lock:
                processing = set(st.processing)
            n_ctx_slot = o.ctx_size  # unified KV cache: every slot sees the whole context
            self.send_json(
                200,
                [
                    {
                        "id": i,
                        "id_task": -1,
                        "n_ctx": n_ctx_slot,
                        "speculative": False,
                        "is_processing": (busy and i == 0) or i in processing,
                    }
                    for i in range(o.parallel)
                ],
            )
        elif path == "/props":
            if self.loading():
                return
            self.send_json(
                200,
                {
                    "n_ctx": o.ctx_size,
                    "total_slots": o.parallel,
                    "model_path": o.model,
                    "model_alias": model_name(o),
                    "build_info": "fake-llama-server",
                    "is_sleeping": False,
                    "default_generation_settings": {"n_ctx": o.ctx_size},
                },
            )
        elif path in ("/v1/models", "/models"):
            if self.loading():
                return
            self.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": model_name(o), "object": "model", "owned_by": "llamacpp"}],
                },
            )
        elif path == "/metrics" and o.metrics:
            if self.loading():
                return
            n_busy = int(time.monotonic() < st.busy_until) + len(st.processing)
            text = (
                f"llamacpp:tokens_predicted_total {st.tokens_predicted}\n"
                f"llamacpp:requests_processing {n_busy}\n"
                "llamacpp:requests_deferred 0\n"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        else:
            self.not_found()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self.not_found()
            return
        if self.loading():
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body is not an object")
            messages = req.get("messages") or []
            n_predict = int(req.get("max_tokens") or req.get("n_predict") or 16)
        except (ValueError, TypeError) as e:
            self.send_json(
                400,
                {"error": {"code": 400, "message": str(e), "type": "invalid_request_error"}},
            )
            return
        self.complete(req, messages, max(1, min(n_predict, 512)))

    def complete(self, req: dict[str, object], messages: object, n_predict: int) -> None:
        st, o = self.state, self.state.o
        prompt_text = json.dumps(messages)
        n_prompt = max(1, len(prompt_text) // 4)
        with st.lock:
            slot = next((i for i in range(o.parallel) if i not in st.processing), 0)
            st.processing.add(slot)
            st.task += 1
            task = st.task
        try:
            prompt_ms = n_prompt / (o.tps * 10) * 1000
            predicted_ms = n_predict / o.tps * 1000
            time.sleep(min((prompt_ms + predicted_ms) / 1000, 30))
        finally:
            with st.lock:
                st.processing.discard(slot)
                st.tokens_predicted += n_predict
                st.requests += 1
        timings = {
            "prompt_n": n_prompt,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / n_prompt,
            "prompt_per_second": n_prompt / prompt_ms * 1000,
            "predicted_n": n_predict,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / n_predict,
            "predicted_per_second": n_predict / predicted_ms * 1000,
        }
        # The real server's print_timing lines, each with its own prefix.
        head = f"slot print_timing: id {slot:2d} | task {task} | "
        log(
            "I",
            f"{head}prompt eval time = {prompt_ms:10.2f} ms / {n_prompt:5d} tokens "
            f"({prompt_ms / n_prompt:8.2f} ms per token, "
            f"{n_prompt / prompt_ms * 1000:8.2f} tokens per second)",
        )
        log(
            "I",
            f"{head}       eval time = {predicted_ms:10.2f} ms / {n_predict:5d} tokens "
            f"({predicted_ms / n_predict:8.2f} ms per token, "
            f"{n_predict / predicted_ms * 1000:8.2f} tokens per second)",
        )
        log(
            "I",
            f"{head}      total time = {prompt_ms + predicted_ms:10.2f} ms / "
            f"{n_prompt + n_predict:5d} tokens",
        )
        content = " ".join(["fake"] * n_predict)
        created = int(time.time())
        cid = f"chatcmpl-fake{task}"
        usage = {
            "completion_tokens": n_predict,
            "prompt_tokens": n_prompt,
            "total_tokens": n_prompt + n_predict,
        }
        if req.get("stream"):
            self.stream(cid, created, content, usage, timings)
            return
        self.send_json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model_name(o),
                "system_fingerprint": "fake-llama-server",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": usage,
                "timings": timings,
            },
        )

    def stream(
        self,
        cid: str,
        created: int,
        content: str,
        usage: dict[str, int],
        timings: dict[str, float],
    ) -> None:
        o = self.state.o
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict[str, str], finish: str | None, **extra: object) -> None:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name(o),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())

        chunk({"role": "assistant", "content": ""}, None)
        for word in content.split(" "):
            chunk({"content": word + " "}, None)
        chunk({}, "length", usage=usage, timings=timings)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def check_model(o: Options) -> None:
    """The real server's failures for a model file that cannot be read as GGUF."""
    path = o.model or ""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        log("E", f"gguf_init_from_file: failed to open GGUF file '{path}' ({e.strerror})")
        model_load_failed(o)
        return
    if len(magic) < 4:
        log("E", "gguf_init_from_reader: failed to read magic")
        model_load_failed(o)
    elif magic != b"GGUF":
        shown = "".join(chr(b) if 32 <= b < 127 else "?" for b in magic)
        log("E", f"gguf_init_from_reader: invalid magic characters: '{shown}', expected 'GGUF'")
        model_load_failed(o)


def cleaning_up() -> None:
    srv("operator()", "operator(): cleaning up before exit...")


def model_load_failed(o: Options, why: str | None = None) -> None:
    """The real server's lines after the one that says why, then exit 1."""
    why = why or f"llama_model_loader: failed to load model from {o.model}"
    log("E", f"llama_model_load: error loading model: {why}")
    log("E", "llama_model_load_from_file_impl: failed to load model")
    log("E", f"cmn  common_init_: failed to load model '{o.model}'")
    srv("load_model", f"failed to load model, '{o.model}'", "E")
    cleaning_up()
    srv("llama_server", "exiting due to model loading error", "E")
    die(1)


def load(o: Options) -> None:
    """The loading phase: detail lines, progress dots, and the scenario's failure."""
    assert o.load_seconds is not None
    srv("load_model", f"loading model '{o.model}'")
    check_model(o)
    log(
        "I",
        f"llama_model_loader: loaded meta data with 23 key-value pairs and 30 tensors from "
        f"{o.model} (version GGUF V3 (latest))",
    )
    n_gpu = o.n_layers if o.n_gpu_layers is None or o.n_gpu_layers < 0 else o.n_gpu_layers
    n_gpu = min(n_gpu, o.n_layers)
    log("I", f"load_tensors: offloading {min(n_gpu, o.n_layers - 1)} repeating layers to GPU")
    log("I", f"load_tensors: offloaded {n_gpu}/{o.n_layers} layers to GPU")
    for line in o.say:
        log("W", line)
    if o.scenario == "oom":
        log(
            "E",
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 20480.00 MiB on device 0: "
            "cudaMalloc failed: out of memory",
        )
        log("E", "alloc_tensor_range: failed to allocate CUDA0 buffer of size 21474836480")
        model_load_failed(o, "unable to allocate CUDA0 buffer")
    deadline = time.monotonic() + o.load_seconds
    crash_at = time.monotonic() + o.load_seconds / 2
    while o.scenario == "stall" or time.monotonic() < deadline:
        if o.scenario == "stall":
            time.sleep(3600)  # said what it had to say; goes silent, /health 503 forever
            continue
        if o.scenario == "crash-load" and time.monotonic() >= crash_at:
            break
        print(".", end="", file=sys.stderr, flush=True)
        time.sleep(0.1)
        if time.monotonic() < deadline:
            print(file=sys.stderr, flush=True)  # a row of dots per tick, one line each
    if o.scenario == "crash-load":
        print(file=sys.stderr, flush=True)
        log(
            "E",
            "/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c:1234: GGML_ASSERT(src0->type == GGML_TYPE_F32) failed",
        )
        print("Segmentation fault (core dumped)", file=sys.stderr, flush=True)
        die(139)
    print(file=sys.stderr, flush=True)
    log("I", f"llama_context: n_ctx         = {o.ctx_size}")
    srv(
        "load_model",
        f"initializing, n_slots = {o.parallel}, n_ctx_slot = {o.ctx_size}, kv_unified = 'true'",
    )


def after_ready(state: State) -> None:
    o = state.o
    if o.busy_seconds > 0:
        state.busy_until = time.monotonic() + o.busy_seconds
    if o.lines > 0:

        def lines() -> None:
            period = 1 / o.line_rate if o.line_rate > 0 else 0
            start = time.monotonic()
            for n in range(1, o.lines + 1):
                print(fake_line(o, n), flush=True)
                if period:
                    delay = start + n * period - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

        threading.Thread(target=lines, daemon=True).start()
    if o.scenario == "crash-after-ready":

        def crash() -> None:
            time.sleep(o.exit_after)
            srv("operator()", "fatal error: the fake server crashes (--fake-exit-after)", "E")
            die(1)

        threading.Thread(target=crash, daemon=True).start()


ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def fake_line(o: Options, n: int) -> str:
    """`fake line N`, then --fake-line-fill, then letters a-z repeated up to --fake-line-bytes."""
    text = f"fake line {n}" + (f" {o.line_fill}" if o.line_fill else "")
    need = o.line_bytes - len(text.encode("utf-8")) - 1
    if need > 0:
        text += " " + (ALPHABET * (need // len(ALPHABET) + 1))[:need]
    return text


def main(argv: list[str]) -> None:
    o = parse(argv)
    if o.scenario == "bad-flag":
        invalid("--bogus-flag")

    def on_term(signum: int, _frame: object) -> None:
        if o.ignore_sigterm:
            srv("signal", f"received signal {signum}, ignored (--fake-ignore-sigterm)", "W")
            return
        cleaning_up()
        die(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    srv("llama_server", "initializing ...")
    srv(
        "llama_server",
        "security: no API key is set and CORS allows all origins (this is the fake llama-server)",
        "W",
    )
    state = State(o)
    Handler.state = state
    try:
        ThreadingHTTPServer.address_family = socket.AF_INET6 if ":" in o.host else socket.AF_INET
        httpd = ThreadingHTTPServer((o.host, o.port), Handler)
    except OSError:
        srv("start", f"couldn't bind HTTP server socket, hostname: {o.host}, port: {o.port}", "E")
        cleaning_up()
        srv("llama_server", "exiting due to HTTP server error", "E")
        die(1)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    if not o.model:
        # The real server starts a router without -m; the fake insists on a model.
        srv("llama_server", "no model given (-m PATH): the fake server needs one", "E")
        die(1)
    load(o)
    state.ready = True
    srv("llama_server", "model loaded")
    srv("llama_server", f"listening on http://{o.host}:{o.port}")
    after_ready(state)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
