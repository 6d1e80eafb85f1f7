"""llm_mcp.wire: tolerant of what it does not know, and in step with what the daemon sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from llm_mcp.wire import Job, LogLine, Logs, ModelEntry, ModelList, Status
from tests.cli.test_commands import SIDE_BY_SIDE, _ok
from tests.conftest import FAKE_PROFILES, Setup
from tests.daemons import Daemons, cli


def undeclared(value: Any, path: str = "") -> list[str]:
    """The paths of the fields the wire models keep as extras (declared nowhere)."""
    out = []
    if isinstance(value, BaseModel):
        out += [f"{path}.{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            out += undeclared(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            out += undeclared(item, f"{path}[]")
    return sorted(set(out))


def test_a_field_from_a_newer_daemon_is_kept_and_a_missing_one_has_its_default() -> None:
    job = Job.model_validate({"id": "job-1", "kind": "teleport", "warp": 9})
    assert job.kind == "teleport" and job.model_extra == {"warp": 9} and job.stops == [] and job.done is False
    assert job.model_dump()["warp"] == 9
    line = LogLine.model_validate({"seq": 3, "text": "hi"})
    assert line.model is None and line.kind == "log"
    entry = ModelEntry.model_validate({"id": "qwen", "current": True})
    assert entry.is_running and entry.where == "local/all" and entry.would_replace == []


def test_a_single_model_daemons_status_reads_as_one_running_model() -> None:
    old = {"state": "loading", "profile": {"id": "qwen", "name": "Qwen", "model": "q.gguf", "port": 8080},
           "endpoint": "http://127.0.0.1:8080", "job": {"id": "job-2", "kind": "switch", "profile": "qwen"}}
    status = Status.model_validate(old)
    [model] = status.running_models()
    assert (model.id, model.state, model.port, model.engine, model.gpus) == ("qwen", "loading", 8080, "local",
                                                                            "all")
    assert model.job is not None and model.job.id == "job-2"
    assert [j.id for j in status.jobs_in_flight()] == ["job-2"]
    assert Status.model_validate({"state": "stopped", "profile": None}).running_models() == []


@pytest.mark.docker
def test_the_daemons_answers_have_no_field_the_wire_does_not_declare(setup: Setup, daemons: Daemons) -> None:
    setup.write(FAKE_PROFILES + SIDE_BY_SIDE)
    _ok(cli(setup, "switch", "side-a"))
    _ok(cli(setup, "switch", "fake-a"))
    status = Status.model_validate(json.loads(_ok(cli(setup, "status", "--json")).stdout))
    models = ModelList.model_validate(json.loads(_ok(cli(setup, "models", "--json")).stdout))
    logs = Logs.model_validate(json.loads(_ok(cli(setup, "logs", "--json", "-n", "20")).stdout))
    assert [m.id for m in status.running_models()] == ["side-a", "fake-a"]
    assert status.primary == "fake-a" and {e.name for e in status.engines} == {"local"}
    assert {m.id for m in models.models if m.is_running} == {"side-a", "fake-a"}
    assert {line.model for line in logs.lines if line.kind == "log"} <= {"side-a", "fake-a"}
    assert undeclared(status) == undeclared(models) == undeclared(logs) == []
