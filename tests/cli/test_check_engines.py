# ruff: noqa: F811 - the second-engine fixtures are imported from tests/engines.py
"""`llm-mcp check` looks at every [engine NAME] of models.conf: a REAL second dockerd."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from llm_mcp.clients.check import diagnose
from tests.conftest import Setup
from tests.engines import Engine, _module_engine, engine  # noqa: F401

# docker-py leaks the socket of a unix connect that fails (see test_lifecycle_docker_outage.py);
# the GC closes them, here, under this module's filter.
pytestmark = [pytest.mark.docker,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(autouse=True)
def _collect_leaked_sockets() -> Iterator[None]:
    yield
    gc.collect()


def _with_engine(setup: Setup, engine: Engine) -> None:
    text = setup.config_path.read_text(encoding="utf-8")
    setup.config_path.write_text(text + f"\n[engine gpu2]\nurl = {engine.host}\nmodels_dir = /srv/models\n",
                                 encoding="utf-8")


def test_check_names_a_second_engine_that_answers_and_one_that_does_not(setup: Setup, engine: Engine) -> None:
    _with_engine(setup, engine)
    findings = {f.check: f for f in diagnose(setup.config_path)}
    assert findings["docker"].level == "ok"
    assert findings["docker gpu2"].level == "ok", findings["docker gpu2"]
    assert "gpu2" in findings["docker gpu2"].message and engine.host in findings["docker gpu2"].message
    engine.stop()
    started = time.monotonic()
    findings = {f.check: f for f in diagnose(setup.config_path)}
    took = time.monotonic() - started
    down = findings["docker gpu2"]
    assert down.level == "error" and down.fix, down
    assert findings["docker"].level == "ok"  # the local engine is judged on its own
    assert took < 15, took  # bounded: a dead engine costs its ~2 s connect, not a hang
