"""The conflict rule: which profiles can run side by side (llm_mcp/config/placement.py)."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_mcp.config.models_conf import Config, Profile, load_config, parse_config
from llm_mcp.config.placement import conflict, conflicting
from tests.conftest import FAKE_PROFILES, real_profiles

ROOT = Path(__file__).resolve().parents[2]
CONF = Path("/srv/llm/models.conf")
UUID_A = "GPU-8a3c9e1f-2b4d-4c6e-9f10-1a2b3c4d5e6f"
UUID_B = "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text).lstrip("\n"), CONF)


def pair(a: str, b: str, extra: str = "") -> tuple[Profile, Profile]:
    """Profiles [a] and [b] with the given placement lines (`;` separates lines)."""
    cfg = parse(f"[defaults]\nmodels_dir = /models\n\n[a]\nmodel = a.gguf\n{a.replace(';', chr(10))}\n\n"
                f"[b]\nmodel = b.gguf\n{b.replace(';', chr(10))}\n\n{extra}")
    return cfg.profile("a"), cfg.profile("b")


# -- the rule, case by case ------------------------------------------------------------


def test_two_models_on_two_gpus_run_side_by_side() -> None:
    a, b = pair("gpus = 0;port = 8080", "gpus = 1;port = 8081")
    assert conflict(a, b) is None


def test_two_models_on_one_gpu_conflict() -> None:
    a, b = pair("gpus = 0;port = auto", "gpus = 0,1;port = auto")
    assert conflict(a, b) == "both use GPU 0 on engine local"


def test_all_gpus_shares_with_any_listed_gpu() -> None:
    a, b = pair("gpus = all;port = auto", "gpus = 1,2;port = auto")
    assert conflict(a, b) == "both use GPUs 1, 2 on engine local"
    a, b = pair("port = auto", "port = auto")
    assert conflict(a, b) == "both use all GPUs on engine local"


def test_cpu_only_shares_no_gpu() -> None:
    a, b = pair("gpus = none;port = auto", "port = auto")
    assert conflict(a, b) is None
    a, b = pair("gpus = none;port = auto", "gpus = none;port = auto")
    assert conflict(a, b) is None


def test_the_same_fixed_port_conflicts_and_auto_never_does() -> None:
    a, b = pair("gpus = none;port = 8080", "gpus = none;port = 8080")
    assert conflict(a, b) == "both publish port 8080 on engine local"
    a, b = pair("gpus = none;port = auto", "gpus = none;port = auto")
    assert conflict(a, b) is None
    a, b = pair("gpus = none;port = 8080", "gpus = none;port = auto")
    assert conflict(a, b) is None


def test_exclusive_conflicts_with_everything_on_its_engine() -> None:
    a, b = pair("gpus = none;port = auto;exclusive = true", "gpus = none;port = auto")
    assert conflict(a, b) == "a runs exclusive on engine local"
    assert conflict(b, a) == "a runs exclusive on engine local"


def test_different_engines_never_conflict() -> None:
    engine = "[engine box2]\nurl = unix:///run/box2.sock\n"
    a, b = pair("exclusive = true", "engine = box2;exclusive = true", engine)
    assert conflict(a, b) is None
    a, b = pair("engine = box2", "engine = box2", engine)
    assert conflict(a, b) == "both use all GPUs on engine box2"


def test_the_same_model_conflicts_with_itself() -> None:
    a, _ = pair("gpus = none;port = auto", "")
    assert conflict(a, a) == "same model"


def test_uuids_compare_normalised() -> None:
    a, b = pair(f"gpus = {UUID_A.lower()};port = auto", f"gpus = {UUID_A.upper()};port = auto")
    assert conflict(a, b) == f"both use GPU {UUID_A} on engine local"
    a, b = pair(f"gpus = {UUID_A};port = auto", f"gpus = {UUID_B};port = auto")
    assert conflict(a, b) is None


def test_an_index_and_a_uuid_may_be_one_gpu_unless_the_engine_says() -> None:
    a, b = pair("gpus = 0;port = auto", f"gpus = {UUID_A};port = auto")
    why = conflict(a, b)
    assert why is not None and "may share a GPU" in why and "on engine local" in why
    assert conflict(b, a) is not None
    # The engine's declared GPUs (UUIDs in index order) tell which index is which card.
    assert conflict(a, b, {"local": [UUID_B, UUID_A]}) is None
    assert conflict(a, b, {"local": [UUID_A.upper(), UUID_B]}) == "both use GPU 0 on engine local"
    assert conflict(a, b, {"other": [UUID_B, UUID_A]}) is not None  # another engine's list says nothing
    assert conflict(a, b, {"local": ["MIG-GPU-x/1/0", UUID_A]}) is None  # odd ids from NVML: no crash


def test_declared_engine_gpus_reach_the_rule_through_the_config() -> None:
    engine = f"[engine local]\ngpus = {UUID_B}, {UUID_A}\n"
    a, b = pair("gpus = 0;port = auto", f"gpus = {UUID_A};port = auto", engine)
    cfg = parse(f"[a]\nmodel = a.gguf\n\n{engine}")
    assert cfg.gpu_uuids == {"local": (UUID_B, UUID_A)}
    assert conflict(a, b, cfg.gpu_uuids) is None


def test_conflicting_lists_the_others_in_the_way_with_reasons() -> None:
    cfg = parse("""
        [defaults]
        port = auto
        [a]
        model = a.gguf
        gpus = 0
        [b]
        model = b.gguf
        gpus = 1
        [c]
        model = c.gguf
        [d]
        model = d.gguf
        gpus = none
    """)
    a = cfg.profile("a")
    found = conflicting(a, cfg.profiles.values())  # a itself is among them: skipped
    assert [(p.id, why) for p, why in found] == [("c", "both use GPU 0 on engine local")]
    assert conflicting(cfg.profile("d"), cfg.profiles.values()) == []


# -- a config without placement keys: every pair conflicts (one model at a time) --------


# The tests' own configs, as tests/conftest.py's Setup writes them.
_TEST_CONF = ("[defaults]\nmodels_dir = /models\nport = 41234\nstop_grace = 2\n"
              + FAKE_PROFILES + real_profiles())


@pytest.mark.parametrize("cfg", [load_config(ROOT / "models.conf"), parse(_TEST_CONF)],
                         ids=["example", "tests"])
def test_a_config_without_placement_keys_runs_one_model_at_a_time(cfg: Config) -> None:
    assert len(cfg.profiles) >= 2
    for a, b in itertools.combinations(cfg.profiles.values(), 2):
        assert conflict(a, b) is not None, (a.id, b.id)
        assert conflict(b, a) is not None


# -- properties ------------------------------------------------------------------------

_BASE = parse("[a]\nmodel = a.gguf\n").profile("a")
_GPU_IDS = ["0", "1", "2", UUID_A, UUID_B]
_gpus = st.one_of(st.none(), st.just(()),
                  st.lists(st.sampled_from(_GPU_IDS), min_size=1, max_size=3, unique=True).map(tuple))


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    return replace(_BASE, id=draw(st.sampled_from(["a", "b", "c"])),
                   engine=draw(st.sampled_from(["local", "box2"])), gpus=draw(_gpus),
                   exclusive=draw(st.booleans()), port=draw(st.sampled_from([None, 8080, 8081])))


_uuid_maps = st.sampled_from([None, {}, {"local": [UUID_A, UUID_B]}, {"local": [UUID_B], "box2": [UUID_A]}])


@settings(max_examples=400, deadline=None)
@given(a=profiles(), b=profiles(), uuids=_uuid_maps)
def test_conflict_is_symmetric(a: Profile, b: Profile, uuids: dict[str, list[str]] | None) -> None:
    assert (conflict(a, b, uuids) is None) == (conflict(b, a, uuids) is None)


@settings(max_examples=200, deadline=None)
@given(a=profiles(), b=profiles())
def test_knowing_which_index_is_which_uuid_only_removes_conflicts(a: Profile, b: Profile) -> None:
    """Without the mapping the rule errs towards conflict; the mapping can only lift a conflict."""
    if conflict(a, b) is None:
        assert conflict(a, b, {"local": [UUID_A, UUID_B], "box2": [UUID_B, UUID_A]}) is None


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.sampled_from(["p", "q", "r", "s", "t"]), min_size=2, max_size=5, unique=True),
       port=st.integers(1, 65535))
def test_profiles_without_placement_keys_all_conflict(ids: list[str], port: int) -> None:
    text = f"[defaults]\nport = {port}\n" + "".join(f"[{i}]\nmodel = {i}.gguf\n" for i in ids)
    cfg = parse(text)
    for a, b in itertools.permutations(cfg.profiles.values(), 2):
        assert conflict(a, b) is not None
    assert all(len(conflicting(p, cfg.profiles.values())) == len(ids) - 1 for p in cfg.profiles.values())
