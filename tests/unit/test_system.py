"""SystemSampler against the real psutil, and the `docker stats` arithmetic."""

from __future__ import annotations

import json
import threading
from typing import Any

import psutil
import pytest

from llm_mcp.hardware.system import (
    ContainerStats,
    SystemSample,
    SystemSampler,
    container_stats_from_docker,
)

MIB = 1024 * 1024
GIB = 1024 * MIB


# -- SystemSampler, real psutil -------------------------------------------------


def test_the_first_sample_primes_the_cpu_counters_and_reports_cpu_as_unknown() -> None:
    sample = SystemSampler(clock=lambda: 12.5).sample()

    assert sample.cpu_pct is None
    assert sample.per_cpu_pct == ()
    assert sample.taken_at == 12.5


def test_later_samples_report_real_host_values_in_sane_ranges() -> None:
    sampler = SystemSampler()
    sampler.sample()
    sum(i * i for i in range(200_000))  # a little CPU time between the two samples

    sample = sampler.sample()

    assert sample.cpu_pct is not None
    assert 0.0 <= sample.cpu_pct <= 100.0
    assert len(sample.per_cpu_pct) == psutil.cpu_count()
    assert all(0.0 <= pct <= 100.0 for pct in sample.per_cpu_pct)
    total = psutil.virtual_memory().total / MIB
    assert sample.ram_total_mib == pytest.approx(total)
    assert sample.ram_used_mib is not None
    assert 0.0 < sample.ram_used_mib <= total
    assert sample.swap_used_mib is not None
    assert sample.swap_used_mib >= 0.0
    loads = (sample.load_1, sample.load_5, sample.load_15)
    assert all(load is not None and load >= 0.0 for load in loads)


def test_each_thread_primes_its_own_cpu_counters() -> None:
    sampler = SystemSampler()
    sampler.sample()
    sampler.sample()
    seen: list[SystemSample] = []

    thread = threading.Thread(target=lambda: seen.append(sampler.sample()))
    thread.start()
    thread.join(timeout=10)

    assert seen[0].cpu_pct is None
    assert sampler.sample().cpu_pct is not None


def test_a_system_sample_serialises_to_json_and_back() -> None:
    sampler = SystemSampler()
    sampler.sample()
    sample = sampler.sample()

    data = json.loads(json.dumps(sample.to_dict()))

    assert SystemSample.from_dict(data) == sample
    assert data["per_cpu_pct"] == list(sample.per_cpu_pct)


class _BrokenPsutil:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise psutil.AccessDenied()

        return fail


def test_sample_never_raises_when_every_psutil_call_fails() -> None:
    sampler = SystemSampler(_BrokenPsutil(), clock=lambda: 3.0)
    sampler.sample()

    assert sampler.sample() == SystemSample(
        cpu_pct=None,
        per_cpu_pct=(),
        ram_used_mib=None,
        ram_total_mib=None,
        swap_used_mib=None,
        load_1=None,
        load_5=None,
        load_15=None,
        taken_at=3.0,
    )


# -- docker stats ---------------------------------------------------------------

# One response of GET /containers/{id}/stats?stream=false on a cgroup v2 host,
# trimmed of the network and block-io sections and with round numbers.
STATS_CGROUP_V2: dict[str, Any] = {
    "read": "2026-11-20T10:00:01.000000000Z",
    "preread": "2026-11-20T10:00:00.000000000Z",
    "name": "/llm-mcp-qwen3",
    "id": "5c1f0a6d3b2e",
    "pids_stats": {"current": 14, "limit": 154293},
    "num_procs": 0,
    "cpu_stats": {
        "cpu_usage": {
            "total_usage": 905_400_000_000,
            "usage_in_kernelmode": 12_000_000_000,
            "usage_in_usermode": 893_400_000_000,
        },
        "system_cpu_usage": 7_200_016_000_000_000,
        "online_cpus": 16,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    },
    "precpu_stats": {
        "cpu_usage": {
            "total_usage": 903_400_000_000,
            "usage_in_kernelmode": 11_900_000_000,
            "usage_in_usermode": 891_500_000_000,
        },
        "system_cpu_usage": 7_200_000_000_000_000,
        "online_cpus": 16,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    },
    "memory_stats": {
        "usage": 3 * GIB,
        "stats": {
            "active_anon": 0,
            "active_file": 268_435_456,
            "anon": 1_879_048_192,
            "file": 1_342_177_280,
            "inactive_anon": 1_879_048_192,
            "inactive_file": 1 * GIB,
            "pgfault": 512_000,
            "shmem": 0,
        },
        "limit": 64 * GIB,
    },
}

# The same shape from a cgroup v1 host: total_inactive_file, percpu_usage, no online_cpus.
STATS_CGROUP_V1: dict[str, Any] = {
    "read": "2026-11-20T10:00:01.000000000Z",
    "cpu_stats": {
        "cpu_usage": {
            "total_usage": 51_000_000_000,
            "percpu_usage": [20_000_000_000, 11_000_000_000, 10_000_000_000, 10_000_000_000],
        },
        "system_cpu_usage": 400_004_000_000_000,
    },
    "precpu_stats": {
        "cpu_usage": {
            "total_usage": 50_000_000_000,
            "percpu_usage": [19_500_000_000, 10_500_000_000, 10_000_000_000, 10_000_000_000],
        },
        "system_cpu_usage": 400_000_000_000_000,
    },
    "memory_stats": {
        "usage": 1536 * MIB,
        "stats": {"cache": 1 * GIB, "total_inactive_file": 512 * MIB, "rss": 1 * GIB},
        "limit": 8 * GIB,
    },
}


def test_docker_stats_on_cgroup_v2_give_what_docker_stats_prints() -> None:
    stats = container_stats_from_docker(STATS_CGROUP_V2)

    # cpu: 2.0e9 ns of container time over 16.0e9 ns of host time, 16 CPUs:
    # 2/16 * 16 * 100 = 200 % (two cores busy). memory: 3 GiB - 1 GiB inactive_file.
    assert stats == ContainerStats(cpu_pct=200.0, mem_used_mib=2048.0, mem_limit_mib=65536.0)
    assert stats.mem_pct == pytest.approx(3.125)


def test_docker_stats_on_cgroup_v1_count_cpus_from_percpu_usage() -> None:
    stats = container_stats_from_docker(STATS_CGROUP_V1)

    # cpu: 1e9 / 4e9 * 4 CPUs * 100 = 100 %. memory: 1536 MiB - 512 MiB total_inactive_file.
    assert stats == ContainerStats(cpu_pct=100.0, mem_used_mib=1024.0, mem_limit_mib=8192.0)


def test_docker_stats_fall_back_to_cache_when_no_inactive_file_is_reported() -> None:
    stats = {"memory_stats": {"usage": 900 * MIB, "stats": {"cache": 100 * MIB}, "limit": GIB}}

    assert container_stats_from_docker(stats).mem_used_mib == 800.0


def test_docker_stats_keep_usage_when_the_cache_exceeds_it() -> None:
    stats = {"memory_stats": {"usage": 100 * MIB, "stats": {"inactive_file": 200 * MIB}}}

    result = container_stats_from_docker(stats)

    assert result.mem_used_mib == 100.0
    assert result.mem_limit_mib is None
    assert result.mem_pct is None


def test_docker_stats_without_a_previous_reading_report_cpu_as_unknown() -> None:
    first = {**STATS_CGROUP_V2, "precpu_stats": {"cpu_usage": {"total_usage": 0}}}

    assert container_stats_from_docker(first).cpu_pct is None


def test_docker_stats_with_no_cpu_progress_report_zero_percent() -> None:
    idle = {**STATS_CGROUP_V2, "precpu_stats": STATS_CGROUP_V2["cpu_stats"]}

    assert container_stats_from_docker(idle).cpu_pct == 0.0


def test_stats_of_a_stopped_container_read_as_unknown() -> None:
    stopped = {"read": "0001-01-01T00:00:00Z", "cpu_stats": {}, "precpu_stats": {}}

    assert container_stats_from_docker(stopped) == ContainerStats(None, None, None)
    assert json.loads(json.dumps(container_stats_from_docker(stopped).to_dict())) == {
        "cpu_pct": None,
        "mem_used_mib": None,
        "mem_limit_mib": None,
    }
