"""`llm-mcp bench` on the real llama-server (CPU, generated tiny models) through a real daemon.

"Within the spread" on this noisy 2-core machine (other tests and helpers share it):
a repeat's median generation and prompt speed lie inside [min / 2, max * 2] of the
first bench's runs. Sub-millisecond runs of a tiny model jitter by tens of percent
between runs; a factor of two either way still catches a measurement that is wrong
(tokens counted twice, a cached prompt, timings in the wrong unit).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from llm_mcp.clients.client import DaemonClient
from llm_mcp.clients.mcp_server import make_server
from tests.conftest import FAKE_IMAGE, Setup, real_profiles
from tests.daemons import Daemons, cli, socket_of

pytestmark = [pytest.mark.docker]

ARGS = ("--prompt-tokens", "64", "--gen-tokens", "32", "--repeat", "5")
SPREAD_FIELDS = ("load_seconds", "prompt_tps", "gen_tps")


@pytest.fixture
def real(setup: Setup, real_image: str) -> Setup:
    # --metrics: llama-server counts every token it was sent, so a test can prove none was.
    setup.write(real_profiles(real_image).replace("--no-warmup", "--no-warmup --metrics"))
    return setup


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def _metrics(s: Setup) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{s.port}/metrics", timeout=5).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^llamacpp:(\w+) ([0-9.e+-]+)$", text, re.M)}


def _within(repeat: dict[str, float], first: dict[str, float]) -> bool:
    return first["min"] / 2 <= repeat["median"] <= first["max"] * 2


def test_bench_of_two_real_profiles_is_stored_shown_everywhere_and_a_repeat_lands_in_the_spread(
        real: Setup, daemons: Daemons) -> None:
    _json(cli(real, "switch", "real-a", "--json"))
    job = _json(cli(real, "bench", "real-b", "real-a", *ARGS, "--json", timeout=240))
    assert job["kind"] == "bench" and job["result"] == "done", job
    bench = job["bench"]
    assert bench["order"] == ["real-b", "real-a"]  # what ran before goes last: loaded once
    assert job["restored"] is True
    for pid in ("real-a", "real-b"):
        r = bench["results"][pid]
        assert (r["runs"], r["prompt_tokens"], r["gen_tokens"]) == (5, 64, 32)
        assert r["image"] == real.config_path.read_text().split("image = ")[1].split()[0]
        for key in SPREAD_FIELDS:
            assert 0 < r[key]["min"] <= r[key]["median"] <= r[key]["max"], (key, r)
        assert r["memory_source"] == "container" and r["memory_bytes"] > 1 << 20  # no GPU here
    state_file = real.state_dir / f"bench-{real.instance}.json"
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600

    status = _json(cli(real, "status", "--json"))  # the model that ran before is back, speed from the bench
    assert status["state"] == "ready" and status["profile"]["id"] == "real-a"
    assert status["speed"]["source"] == "bench"
    assert status["speed"]["bench_tps"] == bench["results"]["real-a"]["gen_tps"]["median"]

    models = {m["id"]: m for m in _json(cli(real, "models", "--json"))["models"]}
    for pid in ("real-a", "real-b"):
        assert models[pid]["measured"] == bench["results"][pid]
    table = cli(real, "models").stdout
    assert "MEASURED" in table
    for pid in ("real-a", "real-b"):
        row = next(line for line in table.splitlines() if f" {pid} " in line)
        assert re.search(r"\d+ t/s \(\d\d-\d\d\)", row), row

    async def mcp_list() -> dict[str, Any]:
        async with DaemonClient(socket_of(real), config_path=real.config_path, name="test") as daemon, \
                Client(make_server(daemon)) as client:
            result = await client.call_tool("list_models", {})
            assert not result.is_error and result.structured_content is not None
            return dict(result.structured_content)

    listed = {m["id"]: m for m in anyio.run(mcp_list)["models"]}
    for pid in ("real-a", "real-b"):
        assert listed[pid]["measured"]["gen_tps"] == bench["results"][pid]["gen_tps"]

    again = _json(cli(real, "bench", "real-a", "real-b", *ARGS, "--json", timeout=240))
    assert again["result"] == "done", again
    for pid in ("real-a", "real-b"):
        first, second = bench["results"][pid], again["bench"]["results"][pid]
        for key in ("gen_tps", "prompt_tps"):
            assert _within(second[key], first[key]), (pid, key, first[key], second[key])
    latest = {m["id"]: m for m in _json(cli(real, "models", "--json"))["models"]}
    assert latest["real-b"]["measured"] == again["bench"]["results"]["real-b"]


def _until(check: Any, timeout: float) -> Any:
    """Ask `check()` until it gives something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return value


def _log_has(s: Setup, text: str, *, after: str) -> bool:
    """Whether `text` is in the daemon's log (its notes included) after the last line with `after`."""
    lines = [line["text"] for line in _json(cli(s, "logs", "-n", "1000", "--json"))["lines"]]
    starts = [i for i, line in enumerate(lines) if after in line]
    return bool(starts) and any(text in line for line in lines[starts[-1]:])


def test_a_switch_to_a_benched_profile_and_an_adopted_server_are_sent_no_request(
        real: Setup, daemons: Daemons) -> None:
    daemons.start()
    _json(cli(real, "switch", "real-a", "--json"))  # not benched: one test completion, as before
    _until(lambda: _json(cli(real, "status", "--json"))["speed"]["source"] == "verification", 60)
    sent = _metrics(real)
    assert sent["tokens_predicted_total"] > 0

    daemons.cleanup()  # the daemon goes; the container stays
    daemons.start()  # a new daemon adopts it
    _until(lambda: _log_has(real, "adopted: no test completion sent", after="adopted running container"), 60)
    assert _json(cli(real, "status", "--json"))["state"] == "ready"
    after = _metrics(real)
    for counter in ("prompt_tokens_total", "tokens_predicted_total", "n_decode_total"):
        assert after[counter] == sent[counter], counter
    assert after["requests_processing"] == 0

    _json(cli(real, "bench", "real-b", *ARGS, "--json", timeout=240))  # real-a comes back afterwards
    _json(cli(real, "switch", "real-b", "--json"))
    _until(lambda: _log_has(real, "from the bench of", after="switching to Real B"), 60)
    counts = _metrics(real)  # a fresh container: whatever it counted, someone sent
    assert counts["tokens_predicted_total"] == 0 and counts["prompt_tokens_total"] == 0
    assert _json(cli(real, "status", "--json"))["speed"]["source"] == "bench"


SLOW = f"""
[slow]
name = Slow
model = tiny-a.gguf
image = {FAKE_IMAGE}
flags = --fake-load-seconds 30

[fake-a]
name = Fake A
model = tiny-a.gguf
image = {FAKE_IMAGE}
"""


def test_a_bench_outlives_its_client_is_joined_refuses_a_switch_and_force_replaces_it(
        setup: Setup, real_image: str, daemons: Daemons) -> None:
    setup.write(real_profiles(real_image) + SLOW)
    started = _json(cli(setup, "bench", "slow", "real-a", "--no-wait", "--json"))
    assert started["kind"] == "bench" and not started["done"]
    # The client that asked has exited; the bench goes on in the daemon, for every client to see.
    status = _json(cli(setup, "status", "--json"))
    assert status["job"]["id"] == started["id"] and status["job"]["kind"] == "bench"
    assert status["job"]["bench"]["order"] == ["slow", "real-a"]
    joined = _json(cli(setup, "bench", "slow", "real-a", "--no-wait", "--json"))
    assert joined["id"] == started["id"]
    busy = cli(setup, "switch", "real-b", "--json")
    assert busy.returncode == 3, busy.stderr
    assert "bench" in busy.stderr and "--force" in busy.stderr
    other = cli(setup, "bench", "real-b", "--json")
    assert other.returncode == 3, other.stderr
    _json(cli(setup, "switch", "real-b", "--force", "--json"))
    job = _json(cli(setup, "status", "--json"))["last_switch"]
    assert job["kind"] == "switch" and job["result"] == "ready"
    cancelled = _json(cli(setup, "bench", "slow", "--no-wait", "--force", "--json"))  # bench replaces too
    assert cancelled["kind"] == "bench"


def test_a_profile_that_cannot_be_measured_fails_alone_and_nothing_runs_after_when_nothing_ran_before(
        setup: Setup, real_image: str, daemons: Daemons) -> None:
    setup.write(real_profiles(real_image) + SLOW)
    done = cli(setup, "bench", "fake-a", "real-a", *ARGS, timeout=240)
    assert done.returncode == 1, done.stderr + done.stdout
    assert "fake-a   failed: the server did not tokenize" in done.stdout, done.stdout
    assert re.search(r"real-a +[0-9.]+ s", done.stdout), done.stdout
    assert "nothing was running before the bench: nothing is running now" in done.stdout
    assert _json(cli(setup, "status", "--json"))["state"] == "stopped"
    models = {m["id"]: m for m in _json(cli(setup, "models", "--json"))["models"]}
    assert models["fake-a"]["measured"] is None and models["real-a"]["measured"] is not None
    too_long = cli(setup, "bench", "real-b", "--prompt-tokens", "250", "--gen-tokens", "32", timeout=120)
    assert too_long.returncode == 1, too_long.stderr
    assert "250 prompt + 32 generated tokens do not fit one slot's context of 256 tokens" in too_long.stdout
    bad = cli(setup, "bench", "real-a", "--repeat", "0")
    assert bad.returncode == 2 and "repeat" in bad.stderr and "1..100" in bad.stderr, bad.stderr
    unknown = cli(setup, "bench", "real-a", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr, unknown.stderr
