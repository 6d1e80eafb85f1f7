"""The in-memory STAND-IN runtime behaves as DockerRuntime does, on the points the core relies on.

Each test runs twice: against a real Docker Engine (with the fake llama-server
image) and against llm_mcp.runtime.memory, so tests/core's fast tier is only as
good as this agreement. The outage tests stop a real second dockerd
(tests/engines.py), with and without --live-restore.
"""

from __future__ import annotations

import gc
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from llm_mcp.config.compose import LABEL_ENGINE, LABEL_INSTANCE, ContainerSpec, profile_spec
from llm_mcp.config.models_conf import load_config
from llm_mcp.runtime.base import ContainerInfo, EngineUnavailable, Runtime, StartError
from llm_mcp.runtime.docker_engine import DockerRuntime
from llm_mcp.runtime.memory import MemoryEngine
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, Setup
from tests.engines import Engine, _module_engine, _plain_engine, engine, plain_engine  # noqa: F401

# docker-py leaks the socket of a unix connect that fails (see test_lifecycle_docker_outage).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@dataclass
class Side:
    """One runtime under test, a second instance on the same engine, and a hand on its containers."""

    runtime: Runtime
    neighbour: Runtime
    spec: ContainerSpec
    kill: Callable[[str], object]
    run_unlabelled: Callable[[ContainerSpec], object]  # `docker create` of the spec's name, its labels
    neighbour_instance: str
    on: Callable[[str], Runtime]  # this instance's runtime under another engine name, same engine


@pytest.fixture(params=["docker", "memory"])
def side(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> Iterator[Side]:
    s = Setup(tmp_path, models_dir)
    s.write(FAKE_PROFILES)
    config = load_config(s.config_path)
    spec, _ = profile_spec(config.profile("fake-a"), config.instance)
    other = "t" + uuid.uuid4().hex[:10]
    if request.param == "memory":
        engine = MemoryEngine()
        yield Side(engine.runtime(s.instance), engine.runtime(other), spec, engine.kill,
                   engine.run_container, other, lambda name: engine.runtime(s.instance, name))
        return
    request.getfixturevalue("docker_engine")
    squatters: list[str] = []

    def run_unlabelled(sp: ContainerSpec) -> None:
        labels = [arg for key, value in sp.labels.items() for arg in ("--label", f"{key}={value}")]
        subprocess.run(["docker", "create", "--name", sp.name, *labels, FAKE_IMAGE], check=True,
                       capture_output=True)
        squatters.append(sp.name)

    try:
        yield Side(DockerRuntime(s.instance), DockerRuntime(other), spec,
                   lambda cid: subprocess.run(["docker", "kill", cid], check=True, capture_output=True),
                   run_unlabelled, other,
                   lambda name: DockerRuntime.for_engine(name, None, instance=s.instance))
    finally:
        s.cleanup()
        for name in squatters:
            subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def ids(infos: list[ContainerInfo]) -> list[str]:
    return [i.id for i in infos]


def test_a_started_container_is_visible_to_its_instance_only(side: Side) -> None:
    info = side.runtime.create_and_start(side.spec)
    assert info.running and info.profile == "fake-a" and info.config_hash
    assert ids(side.runtime.managed()) == [info.id]
    assert side.runtime.inspect(info.id) == info
    assert side.neighbour.managed() == []
    assert side.neighbour.inspect(info.id) is None
    assert side.neighbour.stop_and_remove(info.id, 0) is None  # not ours: untouched
    assert ids(side.runtime.managed()) == [info.id]


def test_a_removed_container_is_none_everywhere_and_removing_it_again_is_no_error(side: Side) -> None:
    info = side.runtime.create_and_start(side.spec)
    assert isinstance(side.runtime.stop_and_remove(info.id, 1), int)
    assert side.runtime.inspect(info.id) is None
    assert side.runtime.managed() == []
    assert side.runtime.stop_and_remove(info.id, 1) is None
    assert side.runtime.wait(info.id, threading.Event()) is None


def test_wait_returns_the_final_state_of_a_killed_container(side: Side) -> None:
    info = side.runtime.create_and_start(side.spec)
    side.kill(info.id)
    final = side.runtime.wait(info.id, threading.Event())
    assert final is not None and not final.running and final.exit_code == 137
    assert ids(side.runtime.managed()) == [info.id]  # kept until removed


def test_a_leftover_of_ours_with_the_same_name_is_replaced_by_create(side: Side) -> None:
    first = side.runtime.create_and_start(side.spec)
    side.kill(first.id)
    second = side.runtime.create_and_start(side.spec)
    assert second.id != first.id
    assert ids(side.runtime.managed()) == [second.id]


def test_a_name_held_by_a_container_we_did_not_label_refuses_the_start(side: Side) -> None:
    side.run_unlabelled(replace(side.spec, labels={}))
    with pytest.raises(StartError) as refused:
        side.runtime.create_and_start(side.spec)
    assert refused.value.failure.reason == "name_conflict"
    assert side.runtime.managed() == []


def test_the_event_stream_reports_our_containers_only(side: Side) -> None:
    seen: list[tuple[str, str]] = []
    stop = threading.Event()
    follower = threading.Thread(target=side.runtime.events, args=(lambda a, c: seen.append((a, c)), stop))
    follower.start()
    theirs_spec = replace(side.spec, name=side.spec.name + "-x", ports={},
                          labels={**side.spec.labels, LABEL_INSTANCE: side.neighbour_instance})
    theirs = side.neighbour.create_and_start(theirs_spec)
    try:
        ours = side.runtime.create_and_start(side.spec)
        assert side.runtime.stop_and_remove(ours.id, 0) is not None
        pause = threading.Event()
        for _ in range(250):
            if ("destroy", ours.id) in seen:
                break
            pause.wait(0.02)
    finally:
        side.neighbour.stop_and_remove(theirs.id, 0)
        stop.set()
        follower.join(5)
    actions = [a for a, c in seen if c == ours.id]
    assert {"create", "start", "die", "destroy"} <= set(actions), actions
    assert theirs.id not in {c for _, c in seen}


def auto(spec: ContainerSpec, suffix: str = "") -> ContainerSpec:
    """The spec with `port = auto` (host port 0) and, with a suffix, a name of its own."""
    return replace(spec, name=spec.name + suffix, ports={k: (ip, 0) for k, (ip, _) in spec.ports.items()})


def final_state(side: Side, container_id: str) -> ContainerInfo:
    side.kill(container_id)
    final = side.runtime.wait(container_id, threading.Event())
    assert final is not None and not final.running
    return final


# ---- several engines: the engine label ------------------------------------------------------


def test_a_container_carries_its_engine_and_only_that_engine_sees_it(side: Side) -> None:
    gpu2 = side.on("gpu2")
    assert (side.runtime.engine, gpu2.engine) == ("local", "gpu2")
    theirs = gpu2.create_and_start(auto(side.spec, "-g"))
    assert theirs.engine == "gpu2"
    assert ids(gpu2.managed()) == [theirs.id]
    assert side.runtime.managed() == []
    assert side.runtime.inspect(theirs.id) is None
    assert side.runtime.stop_and_remove(theirs.id, 0) is None  # another engine's: untouched
    ours = side.runtime.create_and_start(side.spec)
    assert ours.engine == "local"
    assert ids(side.runtime.managed()) == [ours.id]
    assert ids(gpu2.managed()) == [theirs.id]


def test_the_engine_label_is_the_runtimes_whatever_the_spec_says(side: Side) -> None:
    info = side.on("gpu2").create_and_start(side.spec)  # the spec says "local"
    assert side.spec.labels[LABEL_ENGINE] == "local"
    assert info.engine == "gpu2"
    assert side.runtime.managed() == []


def test_a_container_of_the_single_engine_version_counts_as_local(side: Side) -> None:
    labels = {k: v for k, v in side.spec.labels.items() if k != LABEL_ENGINE}
    side.run_unlabelled(replace(side.spec, labels=labels, ports={}))
    [info] = side.runtime.managed()
    assert info.engine == "local" and info.profile == "fake-a"
    assert side.on("gpu2").managed() == []


def test_the_event_stream_reports_this_engines_containers_only(side: Side) -> None:
    gpu2 = side.on("gpu2")
    seen: list[tuple[str, str]] = []
    stop = threading.Event()
    follower = threading.Thread(target=side.runtime.events, args=(lambda a, c: seen.append((a, c)), stop))
    follower.start()
    try:
        theirs = gpu2.create_and_start(auto(side.spec, "-g"))
        gpu2.stop_and_remove(theirs.id, 0)
        ours = side.runtime.create_and_start(auto(side.spec))
        side.runtime.stop_and_remove(ours.id, 0)
        pause = threading.Event()
        for _ in range(250):
            if ("destroy", ours.id) in seen:
                break
            pause.wait(0.02)
    finally:
        stop.set()
        follower.join(5)
    assert ("destroy", ours.id) in seen
    assert theirs.id not in {c for _, c in seen}


def test_a_closed_runtime_connects_again_when_used(side: Side) -> None:
    info = side.runtime.create_and_start(side.spec)
    side.runtime.close()
    assert ids(side.runtime.managed()) == [info.id]
    side.runtime.ping()


# ---- host ports: fixed, and `port = auto` ---------------------------------------------------


def test_port_zero_publishes_a_free_port_that_host_port_tells(side: Side) -> None:
    a = side.runtime.create_and_start(auto(side.spec))
    b = side.runtime.create_and_start(auto(side.spec, "-b"))
    assert a.host_port and b.host_port and a.host_port != b.host_port
    again = side.runtime.inspect(a.id)
    assert again is not None and again.host_port == a.host_port
    assert {i.host_port for i in side.runtime.managed()} == {a.host_port, b.host_port}
    assert final_state(side, a.id).host_port is None  # an auto port goes back with the container


def test_a_fixed_port_is_the_host_port_running_or_not(side: Side) -> None:
    fixed = side.spec.ports["8080/tcp"][1]
    info = side.runtime.create_and_start(side.spec)
    assert fixed and info.host_port == fixed
    assert final_state(side, info.id).host_port == fixed


def test_a_fixed_port_another_container_publishes_refuses_the_start(side: Side) -> None:
    first = side.runtime.create_and_start(side.spec)
    with pytest.raises(StartError) as refused:
        side.runtime.create_and_start(replace(side.spec, name=side.spec.name + "-b"))
    assert refused.value.failure.reason == "port_in_use"
    assert ids(side.runtime.managed()) == [first.id]
    second = side.runtime.create_and_start(auto(side.spec, "-c"))  # an auto port never clashes
    assert second.host_port not in (None, first.host_port)


# ---- an engine that stops: EngineUnavailable within 2 s, and what its return shows ------------


@dataclass
class Outage:
    runtime: Runtime
    stop: Callable[[], object]
    start: Callable[[], object]
    live_restore: bool


@pytest.fixture(params=["docker", "docker-plain", "memory", "memory-plain"])
def outage(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> Iterator[Outage]:
    s = Setup(tmp_path, models_dir)
    s.write(FAKE_PROFILES)
    live_restore = not request.param.endswith("-plain")
    if request.param.startswith("memory"):
        memory = MemoryEngine(name="gpu2", live_restore=live_restore)
        yield Outage(memory.runtime(s.instance), memory.stop_engine, memory.start_engine, live_restore)
        return
    second: Engine = request.getfixturevalue("engine" if live_restore else "plain_engine")
    try:
        yield Outage(DockerRuntime.for_engine("gpu2", second.host, instance=s.instance), second.stop,
                     second.start, live_restore)
    finally:
        second.start()
        ids_left = second.containers(s.instance)
        if ids_left:
            second.docker("rm", "-f", *ids_left, check=False)
        gc.collect()  # the leaked sockets of failed connects, under this module's filter


def spec_for(tmp_path: Path) -> ContainerSpec:
    config = load_config(tmp_path / "models.conf")  # the outage fixture's Setup wrote it
    spec, _ = profile_spec(config.profile("fake-a"), config.instance)
    return auto(spec)


CALLS: dict[str, Callable[[Runtime, str], Any]] = {
    "ping": lambda rt, cid: rt.ping(),
    "managed": lambda rt, cid: rt.managed(),
    "inspect": lambda rt, cid: rt.inspect(cid),
    "wait": lambda rt, cid: rt.wait(cid, threading.Event()),
    "stop_and_remove": lambda rt, cid: rt.stop_and_remove(cid, 0),
    "image_present": lambda rt, cid: rt.image_present(FAKE_IMAGE),
    "events": lambda rt, cid: rt.events(lambda a, c: None, threading.Event()),
}


def test_a_stopped_engine_answers_engine_unavailable_within_2_s_naming_it(
    outage: Outage, tmp_path: Path,
) -> None:
    info = outage.runtime.create_and_start(spec_for(tmp_path))
    outage.stop()
    took: dict[str, float] = {}
    for name, call in CALLS.items():
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as gone:
            call(outage.runtime, info.id)
        took[name] = time.monotonic() - started
        assert gone.value.engine == "gpu2" and "'gpu2'" in gone.value.message, gone.value.message
    with pytest.raises(EngineUnavailable):
        outage.runtime.create_and_start(replace(spec_for(tmp_path), name=info.name + "-x"))
    assert max(took.values()) < 2.0, took
    print(f"EngineUnavailable after (s): { {k: round(v, 4) for k, v in took.items()} }")


def test_the_engines_return_shows_the_container_running_with_live_restore_else_stopped(
    outage: Outage, tmp_path: Path,
) -> None:
    info = outage.runtime.create_and_start(spec_for(tmp_path))
    assert info.finished_at is None
    down = time.time()
    outage.stop()
    outage.start()
    up = time.time()
    outage.runtime.ping()
    after = outage.runtime.inspect(info.id)
    assert after is not None and after.engine == "gpu2"
    if outage.live_restore:
        assert after.running and after.started_at == info.started_at and after.host_port == info.host_port
        assert after.finished_at is None
    else:  # stopped as by `docker stop` while the engine went down: the reason a status can give
        assert not after.running and after.status == "exited" and isinstance(after.exit_code, int)
        assert after.finished_at is not None and down - 0.5 <= after.finished_at <= up + 0.5
        assert after.host_port is None
    assert ids(outage.runtime.managed()) == [info.id]
