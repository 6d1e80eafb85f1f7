"""The bench results file: private, bounded, keyed by what decides the speed, robust to damage."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from llm_mcp.config.models_conf import Profile, load_config
from llm_mcp.core import bench_store
from llm_mcp.core.bench_runner import memory_used, prompt_ids
from llm_mcp.core.bench_store import BenchStore
from tests.conftest import FAKE_PROFILES


def _profiles(tmp_path: Path, extra_flags: str = "") -> dict[str, Profile]:
    conf = tmp_path / "models.conf"
    text = FAKE_PROFILES.replace("flags = --fake-tps 100", f"flags = --fake-tps 100 {extra_flags}")
    conf.write_text(f"[defaults]\nmodels_dir = {tmp_path}\n{text}", encoding="utf-8")
    return dict(load_config(conf).profiles)


def _result(gen: float, date: float = 1.0) -> dict[str, object]:
    one = {"median": gen, "min": gen, "max": gen}
    return {"date": date, "image": "img", "runs": 1, "prompt_tokens": 8, "gen_tokens": 4,
            "load_seconds": one, "prompt_tps": one, "gen_tps": one, "memory_bytes": 5,
            "memory_source": "container", "unexpected": "dropped"}


def test_a_result_is_stored_private_and_read_back_with_the_contract_fields_only(tmp_path: Path) -> None:
    profile = _profiles(tmp_path)["fake-a"]
    path = tmp_path / "state" / "bench-x.json"
    BenchStore(path).record(profile, _result(42.0))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    got = BenchStore(path).latest(profile)
    assert got is not None and got["gen_tps"]["median"] == 42.0
    assert set(got) == set(bench_store.WIRE_FIELDS)


def test_a_result_no_longer_counts_once_the_profiles_flags_change(tmp_path: Path) -> None:
    before = _profiles(tmp_path)["fake-a"]
    after = _profiles(tmp_path, "--threads 3")["fake-a"]
    store = BenchStore(tmp_path / "bench.json")
    store.record(before, _result(42.0))
    assert store.latest(before) is not None
    assert store.latest(after) is None


def test_the_file_stays_bounded_per_profile(tmp_path: Path) -> None:
    profiles = _profiles(tmp_path)
    path = tmp_path / "bench.json"
    store = BenchStore(path)
    for i in range(bench_store.KEEP_PER_PROFILE + 3):
        store.record(profiles["fake-a"], _result(float(i)))
    kept = json.loads(path.read_text())["profiles"]["fake-a"]
    assert len(kept) == bench_store.KEEP_PER_PROFILE
    assert kept[-1]["gen_tps"]["median"] == bench_store.KEEP_PER_PROFILE + 2


def test_a_damaged_or_planted_file_costs_only_the_old_numbers(tmp_path: Path) -> None:
    profile = _profiles(tmp_path)["fake-a"]
    path = tmp_path / "bench.json"
    path.write_text("{not json", encoding="utf-8")
    assert BenchStore(path).latest(profile) is None
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"profiles": {"fake-a": [_result(1.0)]}}), encoding="utf-8")
    path.unlink()
    path.symlink_to(target)
    store = BenchStore(path)
    assert store.latest(profile) is None  # never read through a link
    store.record(profile, _result(7.0))
    assert not path.is_symlink()
    assert json.loads(target.read_text())["profiles"]["fake-a"][0]["gen_tps"]["median"] == 1.0


def test_the_prompt_has_exactly_the_tokens_asked_for() -> None:
    assert prompt_ids([5, 6, 7], 7) == [5, 6, 7, 5, 6, 7, 5]
    assert len(prompt_ids([1], 4096)) == 4096


def test_memory_is_our_gpu_processes_with_nvml_else_the_containers() -> None:
    gpu = {"available": True, "gpus": [
        {"processes": [{"pid": 1, "used_mib": 100.0, "ours": True},
                       {"pid": 2, "used_mib": 900.0, "ours": False}]},
        {"processes": [{"pid": 3, "used_mib": 50.0, "ours": True}]}]}
    assert memory_used(gpu, {"mem_used_mib": 10.0}) == (150 << 20, "nvml")
    assert memory_used({"available": False}, {"mem_used_mib": 10.0}) == (10 << 20, "container")
    assert memory_used(None, None) == (None, None)
