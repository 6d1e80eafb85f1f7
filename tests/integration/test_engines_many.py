# ruff: noqa: F811 - the second-engine fixtures are imported from tests/engines.py
"""Several Docker Engines at once: each runtime sees its own, and a lost one is noticed in time.

Real engines only: the machine's dockerd as "local" and a second dockerd
(tests/engines.py) as "gpu2", over its unix socket and over tcp:// with TLS. A
hung engine is a SIGSTOPped dockerd; an ssh:// engine that never answers is a
socket that accepts and says nothing (no sshd is needed for that).
"""

from __future__ import annotations

import gc
import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from llm_mcp.config.compose import ContainerSpec, profile_spec
from llm_mcp.config.models_conf import load_config
from llm_mcp.core.engine_link import WATCH_S, EngineLink, follow_events
from llm_mcp.runtime.base import EngineUnavailable, Runtime, StartError
from llm_mcp.runtime.docker_engine import LOOK_S, PING_DEADLINE_S, DockerRuntime, TLSFiles
from llm_mcp.runtime.memory import MemoryEngine
from tests.conftest import Setup
from tests.engines import Engine, _module_engine, engine  # noqa: F401

# docker-py leaks the socket of a unix connect that fails (see test_lifecycle_docker_outage).
pytestmark = [pytest.mark.docker,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture
def spec(setup: Setup) -> ContainerSpec:
    config = load_config(setup.config_path)
    made, _ = profile_spec(config.profile("fake-a"), config.instance)
    return replace(made, ports={k: (ip, 0) for k, (ip, _) in made.ports.items()})  # port = auto


@pytest.fixture
def gpu2(engine: Engine, setup: Setup) -> Iterator[DockerRuntime]:
    """The setup's instance on the second engine, named gpu2; its containers removed after."""
    yield DockerRuntime.for_engine("gpu2", engine.host, instance=setup.instance)
    engine.thaw()
    engine.start()
    left = engine.containers(setup.instance)
    if left:
        engine.docker("rm", "-f", *left, check=False)
    gc.collect()  # the leaked sockets of failed connects, under this module's filter


def answers_again(runtime: DockerRuntime, within: float = 10) -> None:
    """A thawed dockerd first works through what queued up meanwhile: its first pings may be late."""
    deadline = time.monotonic() + within
    while True:
        try:
            runtime.ping()
            return
        except EngineUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:  # the caller asserts on it
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def test_two_engines_each_run_a_model_and_each_lists_only_its_own(
    setup: Setup, spec: ContainerSpec, gpu2: DockerRuntime,
) -> None:
    local = DockerRuntime.for_engine("local", None, instance=setup.instance)
    here = local.create_and_start(spec)
    there = gpu2.create_and_start(spec)  # the same name and profile: another engine
    assert (here.engine, there.engine) == ("local", "gpu2")
    assert [i.id for i in local.managed()] == [here.id]
    assert [i.id for i in gpu2.managed()] == [there.id]
    assert here.host_port and there.host_port
    assert local.inspect(there.id) is None and gpu2.inspect(here.id) is None
    assert gpu2.published_host("127.0.0.1") == "127.0.0.1"
    assert gpu2.stop_and_remove(there.id, 0) is not None
    assert [i.id for i in local.managed()] == [here.id]


def test_tcp_with_tls_reaches_the_same_engine_as_its_socket(
    engine: Engine, setup: Setup, spec: ContainerSpec, gpu2: DockerRuntime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert engine.tls is not None and engine.tcp_host is not None
    # requests would verify against this bundle instead of the engine's CA (psf/requests#3829)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    over_tls = DockerRuntime.for_engine("gpu2", engine.tcp_host, TLSFiles(*engine.tls),
                                        instance=setup.instance)
    # The engine answers on its socket first; its TLS listener may take a moment longer after a
    # restart by the test before (the fixture waits for the socket only).
    deadline = time.monotonic() + 20
    while True:
        try:
            over_tls.ping()
            break
        except EngineUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    info = over_tls.create_and_start(spec)
    assert [i.id for i in gpu2.managed()] == [info.id]  # the same engine through its unix socket
    assert over_tls.inspect(info.id) == gpu2.inspect(info.id)
    assert over_tls.published_host("0.0.0.0") == "127.0.0.1"  # the tcp:// URL's host
    took, error = timed(DockerRuntime.for_engine("gpu2", engine.tcp_host, instance=setup.instance).ping)
    assert isinstance(error, EngineUnavailable) and took < PING_DEADLINE_S, (took, error)


def test_a_hung_engine_answers_engine_unavailable_within_2_s_on_ping(
    engine: Engine, setup: Setup, spec: ContainerSpec, gpu2: DockerRuntime,
) -> None:
    info = gpu2.create_and_start(spec)
    assert engine.tls is not None and engine.tcp_host is not None
    over_tls = DockerRuntime.for_engine("gpu2", engine.tcp_host, TLSFiles(*engine.tls),
                                        instance=setup.instance)
    over_tls.ping()
    engine.freeze()
    measured = {
        "ping (connected, unix)": timed(gpu2.ping),
        "ping (connected, tcp+tls)": timed(over_tls.ping),
        "ping (new runtime)": timed(DockerRuntime.for_engine("gpu2", engine.host,
                                                             instance=setup.instance).ping),
        "managed (new runtime)": timed(DockerRuntime.for_engine("gpu2", engine.host,
                                                                instance=setup.instance).managed),
    }
    for what, (took, error) in measured.items():
        assert isinstance(error, EngineUnavailable), (what, error)
        assert "gpu2" in error.message and took < 2.0, (what, took, error.message)
    # A call already connected waits for its answer no longer than a look's read timeout.
    took, error = timed(lambda: gpu2.inspect(info.id))
    assert isinstance(error, EngineUnavailable) and took < LOOK_S + 1, (took, error)
    print({k: round(t, 3) for k, (t, _) in measured.items()}, "inspect:", round(took, 2))
    engine.thaw()
    answers_again(gpu2)


def test_pings_at_once_share_one_answer_healthy_or_hung(engine: Engine, gpu2: DockerRuntime) -> None:
    def all_at_once(call: Callable[[], object] = gpu2.ping) -> list[tuple[float, BaseException | None]]:
        results: list[tuple[float, BaseException | None]] = []
        threads = [threading.Thread(target=lambda: results.append(timed(call))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        return results

    healthy = all_at_once()
    assert [error for _, error in healthy] == [None] * 8
    engine.freeze()
    hung = all_at_once()
    first_contact = all_at_once(DockerRuntime.for_engine("gpu2", engine.host, instance="t").managed)
    engine.thaw()
    for results in (hung, first_contact):
        assert all(isinstance(error, EngineUnavailable) for _, error in results), results
        assert max(took for took, _ in results) < PING_DEADLINE_S + 0.2, results


def test_an_event_stream_asked_of_a_hung_engine_fails_instead_of_waiting_forever(
    engine: Engine, gpu2: DockerRuntime,
) -> None:
    gpu2.ping()
    engine.freeze()
    took, error = timed(lambda: gpu2.events(lambda a, c: None, threading.Event()))
    engine.thaw()
    assert isinstance(error, EngineUnavailable) and took < LOOK_S + 1, (took, error)


def test_quiet_event_and_log_streams_stay_open_past_the_time_their_answer_had_to_begin(
    setup: Setup, spec: ContainerSpec,
) -> None:
    runtime = DockerRuntime(setup.instance)
    quiet = replace(spec, entrypoint=("python3", "-c", f"import time; time.sleep({LOOK_S + 1}); "
                                      "print('late', flush=True); time.sleep(60)"), command=())
    info = runtime.create_and_start(quiet)
    seen: list[str] = []
    lines: list[str] = []
    stop = threading.Event()
    followers = [
        threading.Thread(target=runtime.events, args=(lambda a, c: seen.append(a), stop)),
        threading.Thread(target=runtime.follow_logs, args=(info.id, lambda t, x: lines.append(x), stop)),
    ]
    for follower in followers:
        follower.start()
    try:
        deadline = time.monotonic() + LOOK_S + 6
        while "late" not in lines and time.monotonic() < deadline:
            stop.wait(0.1)
        assert lines == ["late"] and all(f.is_alive() for f in followers)
        assert runtime.stop_and_remove(info.id, 0) is not None
        while "die" not in seen and time.monotonic() < deadline:
            stop.wait(0.05)
        assert "die" in seen
    finally:
        stop.set()
        for follower in followers:
            follower.join(5)


def test_an_ssh_engine_that_never_answers_is_unavailable_within_the_ping_deadline(setup: Setup) -> None:
    if importlib.util.find_spec("paramiko") is None:  # the SDK's ssh:// needs it, even for `ssh`:
        # then the error says what to install, at once
        runtime = DockerRuntime.for_engine("far", "ssh://nobody@127.0.0.1:22", instance=setup.instance)
        took, error = timed(runtime.ping)
        assert isinstance(error, EngineUnavailable) and "docker[ssh]" in error.hint and took < 0.5
        return
    with socket.socket() as silent:  # accepts, and never says a word (not even an SSH banner)
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        runtime = DockerRuntime.for_engine("far", f"ssh://nobody@127.0.0.1:{port}", instance=setup.instance)
        took, error = timed(runtime.ping)
        assert isinstance(error, EngineUnavailable) and took < PING_DEADLINE_S + 0.5, (took, error)
        assert "'far'" in error.message
        took_again, again = timed(runtime.ping)  # the first one is still stuck: no second thread
        assert isinstance(again, EngineUnavailable) and took_again < 0.5
    # Closed: `ssh` is reset and exits, and the stuck ping with it; collected here, under this
    # module's filter, rather than as an unclosed socket and process at the end of the session.
    deadline = time.monotonic() + 10
    while any(t.name == "ping-far" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    print(f"ssh: {took:.2f} s, then {took_again:.3f} s")


# ---- EngineLink: one per engine, loss noticed in time ----------------------------------------


async def follow_until_lost(runtime: Runtime, act: Callable[[], object], limit: float, *,
                            first: bool = False) -> tuple[float, EngineUnavailable]:
    """Follow the engine's events, `act` (stop or freeze it; `first`: before following), and time
    until the link says lost."""
    link = EngineLink.for_runtime(runtime)
    shutdown = threading.Event()
    noticed: list[tuple[float, EngineUnavailable]] = []
    stops: list[threading.Event] = []

    def new_stop() -> threading.Event:
        stops.append(threading.Event())
        return stops[-1]

    def lost(exc: EngineUnavailable) -> None:
        noticed.append((time.monotonic(), exc))
        link.lost(exc)

    if first:
        await anyio.to_thread.run_sync(act)
    acted = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: follow_events(runtime, link, lambda a, c: None, new_stop, shutdown, lost=lost))
        if not first:
            with anyio.fail_after(5):
                while not stops:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.3)  # the stream is open
            await anyio.to_thread.run_sync(act)
            acted = time.monotonic()
        with anyio.fail_after(limit + 5):
            while not noticed:
                await anyio.sleep(0.01)
        shutdown.set()
        for stop in stops:
            stop.set()
        tg.cancel_scope.cancel()
    assert not link.available and link.to_dict()["name"] == runtime.engine
    return noticed[0][0] - acted, noticed[0][1]


@pytest.mark.anyio
async def test_the_link_notices_a_stopped_engine_within_2_s(engine: Engine, gpu2: DockerRuntime) -> None:
    took, problem = await follow_until_lost(gpu2, engine.stop, 2.0)
    assert took < 2.0 and problem.engine == "gpu2", (took, problem.message)
    print(f"stopped engine: lost after {took:.3f} s: {problem.message}")


@pytest.mark.anyio
async def test_the_link_notices_a_hung_engine_by_its_pings(engine: Engine, gpu2: DockerRuntime) -> None:
    took, problem = await follow_until_lost(gpu2, engine.freeze, WATCH_S + 2 * PING_DEADLINE_S)
    engine.thaw()
    assert took < WATCH_S + 2 * PING_DEADLINE_S + 0.5, (took, problem.message)
    print(f"hung engine: lost after {took:.3f} s: {problem.message}")


@pytest.mark.anyio
async def test_the_link_notices_an_engine_hung_before_its_stream_began(
    engine: Engine, gpu2: DockerRuntime,
) -> None:
    gpu2.managed()  # connected: the stream's request reaches the engine, which never answers it
    took, problem = await follow_until_lost(gpu2, engine.freeze, WATCH_S + 2 * PING_DEADLINE_S, first=True)
    engine.thaw()
    assert took < WATCH_S + 2 * PING_DEADLINE_S + 0.5, (took, problem.message)
    print(f"engine hung before the stream: lost after {took:.3f} s")


@pytest.mark.anyio
async def test_the_stand_in_engine_is_noticed_as_fast() -> None:
    memory = MemoryEngine(name="gpu2")
    took, problem = await follow_until_lost(memory.runtime("t"), memory.stop_engine, 2.0)
    assert took < 0.5 and "'gpu2'" in problem.message


def test_the_stand_in_publishes_auto_ports_from_40000_and_refuses_a_fixed_one_in_use(
    spec: ContainerSpec, tmp_path: Path,
) -> None:
    memory = MemoryEngine(name="gpu2")
    runtime = memory.runtime("t" + tmp_path.name[-8:])
    ours = replace(spec, labels={**spec.labels, "io.llm-mcp.instance": runtime.instance})
    first = runtime.create_and_start(ours)
    second = runtime.create_and_start(replace(ours, name=ours.name + "-b"))
    assert (first.host_port, second.host_port) == (40000, 40001)
    fixed = replace(ours, name=ours.name + "-c", ports={"8080/tcp": ("127.0.0.1", 40001)})
    with pytest.raises(StartError) as refused:
        runtime.create_and_start(fixed)
    assert refused.value.failure.reason == "port_in_use"
