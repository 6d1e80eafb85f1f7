"""Smoke tests of the test images: the fake llama-server's scenarios, and the real one.

Every container is started with ``docker run -d`` under a unique name, published on
a random loopback port, and removed in a ``finally``. The fake image is brought up to
date by ``images/build.sh fake`` (about a second when cached); the real llama-server
tests are skipped when ``llm-mcp-test/llama-server:cpu`` has not been built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llm_mcp.demo.tiny_model import (
    write_empty,
    write_not_gguf,
    write_tiny_model,
    write_truncated_model,
)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FAKE = "llm-mcp-test/fake-llama-server:latest"
REAL = "llm-mcp-test/llama-server:cpu"
SERVER_ARGS = ["--host", "0.0.0.0", "--port", "8080", "--ctx-size", "256"]


def docker(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def fake_image() -> str:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.skip("no Docker Engine")
    build = subprocess.run(
        [str(REPO / "images" / "build.sh"), "fake"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr + build.stdout
    return FAKE


@pytest.fixture(scope="session")
def real_image() -> str:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.skip("no Docker Engine")
    if docker("image", "inspect", REAL, check=False).returncode != 0:
        pytest.skip(f"{REAL} not built (images/build.sh llama-server)")
    return REAL


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    a = write_tiny_model(d / "tiny-a.gguf", seed=0, name="tiny-a")
    write_tiny_model(d / "tiny-b.gguf", seed=1, n_layer=3, name="tiny-b")
    write_truncated_model(a, d / "corrupt.gguf")
    write_not_gguf(d / "not-gguf.gguf")
    write_empty(d / "empty.gguf")
    return d


@dataclass
class Container:
    name: str
    _port: int = 0

    @property
    def url(self) -> str:
        # Looked up on first use: a container that exits at once has no port mapping left.
        if not self._port:
            out = docker("port", self.name, "8080/tcp").stdout
            self._port = int(out.split(":")[-1].split()[0])
        return f"http://127.0.0.1:{self._port}"

    def logs(self) -> tuple[str, str]:
        r = docker("logs", self.name)
        return r.stdout, r.stderr

    def wait(self, timeout: float = 15) -> int:
        """The exit code, once the container has stopped."""
        return int(docker("wait", self.name, timeout=timeout).stdout.strip())

    def running(self) -> bool:
        return docker("inspect", "-f", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def health(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code
        except httpx.TransportError:
            return None

    def wait_health(self, code: int, timeout: float = 15) -> float:
        """Poll /health every 50 ms until it answers ``code``; return the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.health() == code:
                return time.monotonic() - start
            if not self.running():
                raise AssertionError(f"container exited; logs: {self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"/health never answered {code}; logs: {self.logs()}")


@contextmanager
def run(image: str, args: list[str], models_dir: Path | None = None, *extra: str) -> Iterator[Container]:
    name = f"llm-mcp-smoke-{uuid.uuid4().hex[:10]}"
    shares_network = "--network" in extra
    cmd = ["run", "-d", "--name", name, *extra]
    if not shares_network:
        cmd += ["-p", "127.0.0.1::8080"]
    if models_dir is not None:
        cmd += ["-v", f"{models_dir}:/models:ro"]
    try:
        docker(*cmd, image, *args)
        yield Container(name)
    finally:
        docker("rm", "-f", name, check=False)


def chat(c: Container) -> httpx.Response:
    return httpx.post(
        f"{c.url}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=30,
    )


# --- the fake llama-server -------------------------------------------------------


def test_fake_ok_loads_serves_and_stops_on_sigterm(fake_image: str, models: Path) -> None:
    args = ["-m", "/models/tiny-a.gguf", *SERVER_ARGS, "-ngl", "7", "--fake-tps", "42"]
    with run(fake_image, [*args, "--fake-load-seconds", "0.6"], models) as c:
        assert c.wait_health(503) < 5
        assert httpx.get(f"{c.url}/health").json()["error"]["message"] == "Loading model"
        c.wait_health(200)
        assert httpx.get(f"{c.url}/health").json() == {"status": "ok"}
        props = httpx.get(f"{c.url}/props").json()
        assert props["n_ctx"] == 256
        assert props["total_slots"] == 4
        assert props["model_path"] == "/models/tiny-a.gguf"
        slots = httpx.get(f"{c.url}/slots").json()
        assert [s["is_processing"] for s in slots] == [False] * 4
        r = chat(c)
        assert r.status_code == 200
        body = r.json()
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] == 8
        assert body["timings"]["predicted_per_second"] == pytest.approx(42)
        docker("stop", "-t", "5", c.name)
        assert c.wait() == 0
        stdout, stderr = c.logs()
        for line in (
            "llama_server: initializing",
            "load_model: loading model '/models/tiny-a.gguf'",
            "offloaded 7/49 layers to GPU",
            "llama_server: model loaded",
            "listening on http://0.0.0.0:8080",
            "tokens per second)",
            "cleaning up before exit...",
        ):
            assert line in stderr
        assert re.search(r"\beval time =\s+190\.48 ms /\s+8 tokens", stderr)
        assert stderr.count("\n.\n") >= 3  # progress dots while loading
        assert stdout == ""


def test_fake_ngl_clamped_and_slow_default(fake_image: str, models: Path) -> None:
    args = ["-m", "/models/tiny-a.gguf", *SERVER_ARGS, "-ngl", "999", "--fake-scenario", "slow"]
    with run(fake_image, [*args, "--fake-load-seconds", "0.3", "--jinja", "-lv", "3"], models) as c:
        c.wait_health(200)
        assert "offloaded 49/49 layers to GPU" in c.logs()[1]


@pytest.mark.parametrize(
    ("model", "scenario", "code", "lines"),
    [
        (
            "missing.gguf",
            "ok",
            1,
            [
                "gguf_init_from_file: failed to open GGUF file '/models/missing.gguf' "
                "(No such file or directory)",
                "exiting due to model loading error",
            ],
        ),
        ("not-gguf.gguf", "ok", 1, ["invalid magic characters: 'this', expected 'GGUF'"]),
        ("empty.gguf", "ok", 1, ["gguf_init_from_reader: failed to read magic"]),
        (
            "tiny-a.gguf",
            "oom",
            1,
            [
                "cudaMalloc failed: out of memory",
                "failed to allocate CUDA0 buffer",
                "error loading model: unable to allocate CUDA0 buffer",
                "exiting due to model loading error",
            ],
        ),
        ("tiny-a.gguf", "crash-load", 139, ["GGML_ASSERT(", "Segmentation fault"]),
        ("tiny-a.gguf", "bad-flag", 1, ["error: invalid argument: --bogus-flag"]),
    ],
)
def test_fake_failures(
    fake_image: str, models: Path, model: str, scenario: str, code: int, lines: list[str]
) -> None:
    args = ["-m", f"/models/{model}", *SERVER_ARGS, "--fake-scenario", scenario]
    with run(fake_image, args, models) as c:
        assert c.wait() == code
        stderr = c.logs()[1]
        for line in lines:
            assert line in stderr
        assert "model loaded" not in stderr


def test_fake_unknown_flag_is_rejected(fake_image: str, models: Path) -> None:
    with run(fake_image, ["-m", "/models/tiny-a.gguf", "--no-mmap"], models) as c:
        assert c.wait() == 1
        assert "error: invalid argument: --no-mmap" in c.logs()[1]


def test_fake_stall_stays_503(fake_image: str, models: Path) -> None:
    with run(
        fake_image, ["-m", "/models/tiny-a.gguf", *SERVER_ARGS, "--fake-scenario", "stall"], models
    ) as c:
        c.wait_health(503)
        before = c.logs()[1]
        time.sleep(1.0)
        assert c.health() == 503
        assert c.logs()[1] == before  # silent
        assert "loading model" in before
        assert "model loaded" not in before


def test_fake_crash_after_ready(fake_image: str, models: Path) -> None:
    args = ["-m", "/models/tiny-a.gguf", *SERVER_ARGS, "--fake-scenario", "crash-after-ready"]
    with run(fake_image, [*args, "--fake-exit-after", "0.5"], models) as c:
        c.wait_health(200)
        assert c.wait() == 1
        assert "model loaded" in c.logs()[1]


def test_fake_lines_busy_and_ignored_sigterm(fake_image: str, models: Path) -> None:
    args = ["-m", "/models/tiny-a.gguf", *SERVER_ARGS, "--fake-load-seconds", "0"]
    extra = ["--fake-lines", "5", "--fake-line-rate", "50", "--fake-busy-seconds", "1"]
    with run(fake_image, [*args, *extra, "--fake-ignore-sigterm"], models) as c:
        c.wait_health(200)
        assert httpx.get(f"{c.url}/slots").json()[0]["is_processing"] is True
        time.sleep(1.2)
        assert httpx.get(f"{c.url}/slots").json()[0]["is_processing"] is False
        assert c.logs()[0].splitlines() == [f"fake line {n}" for n in range(1, 6)]
        start = time.monotonic()
        docker("stop", "-t", "1", c.name)
        assert time.monotonic() - start >= 0.9
        assert c.wait() == 137  # killed after the grace
        assert "ignored (--fake-ignore-sigterm)" in c.logs()[1]


def test_fake_port_in_use(fake_image: str, models: Path) -> None:
    args = ["-m", "/models/tiny-a.gguf", *SERVER_ARGS]
    with run(fake_image, args, models) as first:
        first.wait_health(200)
        # The second container shares the first one's network namespace: port 8080 is taken.
        with run(fake_image, args, models, "--network", f"container:{first.name}") as second:
            assert second.wait() == 1
            stderr = second.logs()[1]
            assert "couldn't bind HTTP server socket" in stderr
            assert "exiting due to HTTP server error" in stderr


# --- the real llama-server ---------------------------------------------------------


@pytest.mark.real_llama
@pytest.mark.parametrize("model", ["tiny-a.gguf", "tiny-b.gguf"])
def test_real_server_loads_tiny_model(real_image: str, models: Path, model: str) -> None:
    with run(real_image, ["-m", f"/models/{model}", *SERVER_ARGS, "-ngl", "0"], models) as c:
        c.wait_health(200, timeout=60)
        r = chat(c)
        assert r.status_code == 200
        body = r.json()
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["timings"]["predicted_per_second"] > 0
        docker("stop", "-t", "5", c.name)
        assert c.wait() == 0
        assert "model loaded" in c.logs()[1]


@pytest.mark.real_llama
@pytest.mark.parametrize(
    ("model", "line"),
    [
        ("missing.gguf", "failed to open GGUF file '/models/missing.gguf'"),
        ("corrupt.gguf", "data is not within the file bounds"),
        ("not-gguf.gguf", "invalid magic characters"),
        ("empty.gguf", "failed to read magic"),
    ],
)
def test_real_server_rejects_bad_files(real_image: str, models: Path, model: str, line: str) -> None:
    with run(real_image, ["-m", f"/models/{model}", *SERVER_ARGS, "-ngl", "0"], models) as c:
        assert c.wait(timeout=30) == 1
        stderr = c.logs()[1]
        assert line in stderr
        assert "exiting due to model loading error" in stderr
