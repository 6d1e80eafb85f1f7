from __future__ import annotations

from pathlib import Path

import pytest

from llm_mcp.demo.shaped_model import Shape, write_shaped_model
from tests.fit.llama_alloc import write_models

MOE = Shape(n_layer=8, n_embd=256, n_head=8, n_head_kv=4, n_ff=256, n_expert=8, n_expert_used=2)


@pytest.fixture(scope="session")
def shaped_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The six models of the accuracy table (docs/fit.md), written once per session."""
    return write_models(tmp_path_factory.mktemp("fit-models"))


@pytest.fixture(scope="session")
def moe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-layer MoE llama (8 experts, 2 used): about 13 MiB of expert weights."""
    return write_shaped_model(tmp_path_factory.mktemp("fit-moe") / "moe8.gguf", MOE, name="moe8")


# The MCP tests' real daemon (autostarted over real Docker with the fake image).
from tests.mcp.conftest import daemon, mcp_setup, mode  # noqa: E402, F401
