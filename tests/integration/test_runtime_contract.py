"""The in-memory STAND-IN runtime behaves as DockerRuntime does, on the points the core relies on.

Each test runs twice: against the real Docker Engine (with the fake llama-server
image) and against llm_mcp.runtime.memory, so tests/core's fast tier is only as
good as this agreement.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from llm_mcp.config.compose import LABEL_INSTANCE, ContainerSpec, profile_spec
from llm_mcp.config.models_conf import load_config
from llm_mcp.runtime.base import ContainerInfo, Runtime, StartError
from llm_mcp.runtime.docker_engine import DockerRuntime
from llm_mcp.runtime.memory import MemoryEngine
from tests.conftest import FAKE_IMAGE, FAKE_PROFILES, Setup


@dataclass
class Side:
    """One runtime under test, a second instance on the same engine, and a hand on its containers."""

    runtime: Runtime
    neighbour: Runtime
    spec: ContainerSpec
    kill: Callable[[str], object]
    run_unlabelled: Callable[[ContainerSpec], object]
    neighbour_instance: str


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
                   engine.run_container, other)
        return
    request.getfixturevalue("docker_engine")
    squatters: list[str] = []

    def run_unlabelled(sp: ContainerSpec) -> None:
        subprocess.run(["docker", "create", "--name", sp.name, FAKE_IMAGE], check=True, capture_output=True)
        squatters.append(sp.name)

    try:
        yield Side(DockerRuntime(s.instance), DockerRuntime(other), spec,
                   lambda cid: subprocess.run(["docker", "kill", cid], check=True, capture_output=True),
                   run_unlabelled, other)
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
