"""GpuSampler against a stand-in of the pynvml functions (there is no GPU here)."""

from __future__ import annotations

import ctypes.util
import json
import logging
from typing import Any

import pynvml  # type: ignore[import-untyped]  # noqa: TID251  (real exception classes)
import pytest

from llm_mcp.hardware.gpu import (
    INIT_RETRY_S,
    NO_GPUS_REASON,
    NO_LIBRARY_REASON,
    GpuProcess,
    GpuSample,
    GpuSampler,
    GpuSnapshot,
    temperature_level,
    usage_level,
)
from tests.unit.nvml_standin import (
    GIB,
    MIB,
    FakeGpu,
    FakeProcess,
    NvmlStandIn,
    no_gpus,
    no_library,
    one_gpu,
    two_gpus,
)

ALL_FUNCTIONS = [
    name[1:]
    for name in vars(NvmlStandIn)
    if name.startswith("_nvml") and name not in ("_nvmlInit", "_nvmlShutdown")
]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def sampler_for(nvml: Any, clock: FakeClock, **kwargs: Any) -> GpuSampler:
    return GpuSampler(nvml, clock=clock, **kwargs)


# -- no GPU is a normal state ------------------------------------------------


def test_missing_nvml_library_reads_as_no_gpu_with_a_reason(clock: FakeClock) -> None:
    snap = sampler_for(no_library(), clock).sample()

    assert snap == GpuSnapshot(False, NO_LIBRARY_REASON, None, (), clock.now)
    assert "libnvidia-ml.so.1" in (snap.reason or "")


def test_a_machine_without_gpus_reports_that_nvml_found_none(clock: FakeClock) -> None:
    snap = sampler_for(no_gpus(), clock).sample()

    assert not snap.available
    assert snap.reason == NO_GPUS_REASON
    assert snap.driver_version == "560.35.03"
    assert snap.gpus == ()


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pynvml.NVMLError_DriverNotLoaded, "driver not loaded"),
        (pynvml.NVMLError_NoPermission, "no permission"),
        (pynvml.NVMLError_Unknown, "NVML initialisation failed"),
        (lambda: OSError("boom"), "NVML initialisation failed: boom"),
    ],
)
def test_each_init_failure_gives_a_human_reason(clock: FakeClock, error: Any, words: str) -> None:
    nvml = one_gpu()
    nvml.fail("nvmlInit", error)

    snap = sampler_for(nvml, clock).sample()

    assert not snap.available
    assert words in (snap.reason or "")


def test_a_failing_gpu_count_is_a_reason_and_nvml_is_shut_down_again(clock: FakeClock) -> None:
    nvml = one_gpu()
    nvml.fail("nvmlDeviceGetCount", pynvml.NVMLError_Unknown)

    snap = sampler_for(nvml, clock).sample()

    assert not snap.available
    assert "could not count the GPUs" in (snap.reason or "")
    assert nvml.initialized == 0


def test_without_a_driver_the_real_pynvml_reports_no_gpu_instead_of_raising() -> None:
    sampler = GpuSampler()
    snap = sampler.sample()
    sampler.close()

    if ctypes.util.find_library("nvidia-ml") is None:
        assert snap == GpuSnapshot(False, NO_LIBRARY_REASON, None, (), snap.taken_at)
    else:
        assert snap.available or snap.reason


# -- init once, retry a failure at most every 30 s ----------------------------


def test_nvml_is_initialised_once_across_many_samples(clock: FakeClock) -> None:
    nvml = one_gpu()
    sampler = sampler_for(nvml, clock)

    for _ in range(5):
        clock.advance(1)
        assert sampler.sample().available

    assert nvml.calls["nvmlInit"] == 1
    assert nvml.calls["nvmlDeviceGetCount"] == 1


def test_a_failed_init_is_retried_only_after_30_seconds(clock: FakeClock) -> None:
    nvml = no_library()
    sampler = sampler_for(nvml, clock)

    assert not sampler.sample().available
    clock.advance(INIT_RETRY_S - 0.5)
    assert sampler.sample().reason == NO_LIBRARY_REASON
    assert nvml.calls["nvmlInit"] == 1

    clock.advance(0.5)
    sampler.sample()
    assert nvml.calls["nvmlInit"] == 2

    nvml.library_missing = False
    nvml.gpus = [FakeGpu()]
    assert not sampler.sample().available  # still inside the next 30 s
    clock.advance(INIT_RETRY_S)
    snap = sampler.sample()
    assert snap.available
    assert snap.reason is None
    assert nvml.calls["nvmlInit"] == 3


def test_close_shuts_nvml_down_once_and_a_later_sample_starts_it_again(clock: FakeClock) -> None:
    nvml = one_gpu()
    sampler = sampler_for(nvml, clock)
    sampler.sample()

    sampler.close()
    sampler.close()

    assert nvml.calls["nvmlShutdown"] == 1
    assert nvml.initialized == 0
    assert sampler.sample().available
    assert nvml.calls["nvmlInit"] == 2


def test_close_without_a_successful_init_does_not_call_shutdown(clock: FakeClock) -> None:
    nvml = no_library()
    with sampler_for(nvml, clock) as sampler:
        sampler.sample()

    assert nvml.calls["nvmlShutdown"] == 0


# -- values -------------------------------------------------------------------


def test_one_gpu_reports_every_field_in_display_units(clock: FakeClock) -> None:
    snap = sampler_for(one_gpu(), clock).sample()

    assert snap.available
    assert snap.reason is None
    assert snap.driver_version == "560.35.03"
    assert snap.taken_at == clock.now
    assert snap.gpus == (
        GpuSample(
            index=0,
            name="NVIDIA GeForce RTX 4090",
            uuid="GPU-11111111-2222-3333-4444-555555555555",
            utilization_pct=37.0,
            memory_used_mib=10240.0,
            memory_total_mib=24576.0,
            temperature_c=61,
            slowdown_temp_c=87,
            shutdown_temp_c=92,
            power_w=215.5,
            power_limit_w=450.0,
            fan_pct=40,
            processes=(),
        ),
    )
    assert snap.gpus[0].memory_pct == pytest.approx(100 * 10 / 24)


def test_two_gpus_are_reported_in_index_order_with_their_own_values(clock: FakeClock) -> None:
    first, second = sampler_for(two_gpus(), clock).sample().gpus

    assert (first.index, second.index) == (0, 1)
    assert first.name == "NVIDIA GeForce RTX 4090"
    assert second.name == "NVIDIA RTX A6000"
    assert (second.utilization_pct, second.memory_used_mib) == (95.0, 40 * 1024.0)
    assert (second.temperature_c, second.slowdown_temp_c, second.shutdown_temp_c) == (84, 93, 98)
    assert (second.power_w, second.power_limit_w) == (290.0, 300.0)
    assert first.fan_pct == 40
    assert second.fan_pct is None  # passively cooled: NVML says Not Supported


def test_a_gpu_whose_handle_fails_is_listed_with_every_field_na(clock: FakeClock) -> None:
    nvml = two_gpus()
    real_handle = nvml.__getattr__("nvmlDeviceGetHandleByIndex")

    def handle(index: int) -> Any:
        if index == 1:
            raise pynvml.NVMLError_GpuIsLost()
        return real_handle(index)

    snap = sampler_for(_Override(nvml, nvmlDeviceGetHandleByIndex=handle), clock).sample()

    assert snap.available
    assert snap.gpus[0].name == "NVIDIA GeForce RTX 4090"
    assert snap.gpus[1] == GpuSample(index=1)


def test_an_unsupported_query_reads_as_na_and_the_rest_still_reads(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = one_gpu()
    nvml.fail("nvmlDeviceGetPowerUsage", pynvml.NVMLError_NotSupported)

    with caplog.at_level(logging.DEBUG, logger="llm_mcp.hardware.gpu"):
        gpu = sampler_for(nvml, clock).sample().gpus[0]

    assert gpu.power_w is None
    assert gpu.power_limit_w == 450.0
    assert gpu.temperature_c == 61
    assert caplog.records == []


def test_a_missing_function_reads_as_na_is_logged_once_and_not_looked_up_again(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = one_gpu()
    nvml.remove("nvmlDeviceGetEnforcedPowerLimit")
    sampler = sampler_for(nvml, clock, slow_field_ttl=1.0)

    with caplog.at_level(logging.WARNING, logger="llm_mcp.hardware.gpu"):
        for _ in range(3):
            gpu = sampler.sample().gpus[0]
            clock.advance(2)

    assert gpu.power_limit_w is None
    assert gpu.power_w == 215.5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "nvmlDeviceGetEnforcedPowerLimit" in messages[0]
    assert caplog.records[0].name == "llm_mcp.hardware.gpu"


@pytest.mark.parametrize(
    "error",
    [pynvml.NVMLError_FunctionNotFound, lambda: pynvml.NVMLLibraryMismatchError("old driver")],
)
def test_a_function_the_driver_lacks_is_treated_as_missing(clock: FakeClock, error: Any) -> None:
    nvml = one_gpu()
    nvml.fail("nvmlDeviceGetComputeRunningProcesses", error)
    sampler = sampler_for(nvml, clock)

    sampler.sample()
    sampler.sample()

    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses"] == 1


def test_any_other_nvml_error_reads_as_na_and_is_logged_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = one_gpu()
    nvml.fail("nvmlDeviceGetTemperature", pynvml.NVMLError_GpuIsLost)
    sampler = sampler_for(nvml, clock)

    with caplog.at_level(logging.WARNING, logger="llm_mcp.hardware.gpu"):
        temps = [sampler.sample().gpus[0].temperature_c for _ in range(3)]

    assert temps == [None, None, None]
    assert nvml.calls["nvmlDeviceGetTemperature"] == 3
    assert len(caplog.records) == 1


def test_nvml_not_available_sentinels_read_as_na(clock: FakeClock) -> None:
    sentinel = (1 << 32) - 1
    gpu = sampler_for(one_gpu(fan=sentinel, temperature=sentinel), clock).sample().gpus[0]

    assert gpu.fan_pct is None
    assert gpu.temperature_c is None


def test_total_memory_is_kept_when_a_later_memory_query_fails(clock: FakeClock) -> None:
    nvml = one_gpu()
    sampler = sampler_for(nvml, clock)
    sampler.sample()

    nvml.fail("nvmlDeviceGetMemoryInfo", pynvml.NVMLError_Unknown)
    gpu = sampler.sample().gpus[0]

    assert gpu.memory_used_mib is None
    assert gpu.memory_total_mib == 24576.0
    assert gpu.memory_pct is None


# -- never raises ---------------------------------------------------------------


@pytest.mark.parametrize("error", [pynvml.NVMLError_Unknown, lambda: RuntimeError("driver fell over")])
def test_sample_never_raises_when_every_device_function_raises(clock: FakeClock, error: Any) -> None:
    nvml = two_gpus()
    for name in ALL_FUNCTIONS:
        if name != "nvmlDeviceGetCount":
            nvml.fail(name, error)

    snap = sampler_for(nvml, clock).sample()

    assert snap.available
    assert snap.driver_version is None
    assert snap.gpus == (GpuSample(index=0), GpuSample(index=1))


@pytest.mark.parametrize("error", [pynvml.NVMLError_Unknown, lambda: RuntimeError("driver fell over")])
def test_sample_never_raises_when_every_function_including_init_raises(clock: FakeClock, error: Any) -> None:
    nvml = two_gpus()
    for name in [*ALL_FUNCTIONS, "nvmlInit", "nvmlShutdown"]:
        nvml.fail(name, error)
    sampler = sampler_for(nvml, clock)

    snap = sampler.sample()
    sampler.close()

    assert not snap.available
    assert snap.reason


def test_sample_never_raises_when_a_query_returns_nonsense(clock: FakeClock) -> None:
    nvml = one_gpu()
    odd = _Override(
        nvml,
        nvmlDeviceGetComputeRunningProcesses=lambda handle: 42,
        nvmlDeviceGetMemoryInfo=lambda handle: "not a struct",
        nvmlDeviceGetName=lambda handle: 7,
    )

    gpu = sampler_for(odd, clock).sample().gpus[0]

    assert (gpu.processes, gpu.memory_used_mib, gpu.name) == ((), None, None)
    assert gpu.temperature_c == 61


def test_a_name_returned_as_bytes_by_an_old_pynvml_is_decoded(clock: FakeClock) -> None:
    odd = _Override(one_gpu(), nvmlDeviceGetName=lambda handle: b"Tesla T4")

    assert sampler_for(odd, clock).sample().gpus[0].name == "Tesla T4"


# -- processes ----------------------------------------------------------------


def test_processes_report_used_memory_in_mib_or_na_when_nvml_cannot_tell(
    clock: FakeClock,
) -> None:
    nvml = one_gpu(
        compute=[
            FakeProcess(pid=100, usedGpuMemory=3 * GIB),
            FakeProcess(pid=101, usedGpuMemory=None),
            FakeProcess(pid=102, usedGpuMemory=NvmlStandIn.NVML_VALUE_NOT_AVAILABLE_ULONGLONG),
            FakeProcess(pid=103, usedGpuMemory=512 * MIB),
        ]
    )

    procs = sampler_for(nvml, clock).sample().gpus[0].processes

    assert procs == (
        GpuProcess(pid=100, used_mib=3072.0, ours=False),
        GpuProcess(pid=101, used_mib=None, ours=False),
        GpuProcess(pid=102, used_mib=None, ours=False),
        GpuProcess(pid=103, used_mib=512.0, ours=False),
    )


def test_compute_and_graphics_processes_are_merged_once_per_pid(clock: FakeClock) -> None:
    nvml = one_gpu(
        compute=[FakeProcess(pid=7, usedGpuMemory=None), FakeProcess(pid=8, usedGpuMemory=GIB)],
        graphics=[FakeProcess(pid=7, usedGpuMemory=2 * GIB), FakeProcess(pid=9, usedGpuMemory=0)],
    )

    procs = sampler_for(nvml, clock).sample().gpus[0].processes

    assert [(p.pid, p.used_mib) for p in procs] == [(7, 2048.0), (8, 1024.0), (9, 0.0)]


def test_processes_of_our_container_are_marked_ours(clock: FakeClock) -> None:
    nvml = one_gpu(
        compute=[FakeProcess(pid=4242, usedGpuMemory=GIB), FakeProcess(pid=5000, usedGpuMemory=GIB)]
    )
    ours = {4242, 4243}
    sampler = sampler_for(nvml, clock, container_pids=lambda: ours)

    procs = sampler.sample().gpus[0].processes
    assert {p.pid: p.ours for p in procs} == {4242: True, 5000: False}

    ours.clear()
    ours.add(5000)
    procs = sampler.sample().gpus[0].processes
    assert {p.pid: p.ours for p in procs} == {4242: False, 5000: True}


def test_a_failing_container_pid_lookup_marks_nothing_ours_and_does_not_raise(
    clock: FakeClock,
) -> None:
    def broken() -> set[int]:
        raise ConnectionError("docker is gone")

    nvml = one_gpu(compute=[FakeProcess(pid=1, usedGpuMemory=GIB)])
    snap = sampler_for(nvml, clock, container_pids=broken).sample()

    assert snap.gpus[0].processes == (GpuProcess(pid=1, used_mib=1024.0, ours=False),)


# -- caching --------------------------------------------------------------------


def test_slow_fields_are_cached_for_the_ttl_and_static_ones_for_good(clock: FakeClock) -> None:
    nvml = two_gpus()
    sampler = sampler_for(nvml, clock, slow_field_ttl=5.0)

    for _ in range(5):  # t = 0..4 s
        sampler.sample()
        clock.advance(1)

    assert nvml.calls["nvmlDeviceGetTemperatureThreshold"] == 4  # 2 GPUs x 2 thresholds
    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 2
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 10
    assert nvml.calls["nvmlDeviceGetUtilizationRates"] == 10
    assert nvml.calls["nvmlDeviceGetTemperature"] == 10

    clock.advance(0.5)  # past the ttl
    for _ in range(20):
        sampler.sample()
        clock.advance(1)

    assert nvml.calls["nvmlDeviceGetTemperatureThreshold"] == 4 * 5
    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 2 * 5
    assert nvml.calls["nvmlDeviceGetName"] == 2
    assert nvml.calls["nvmlDeviceGetUUID"] == 2
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2
    assert nvml.calls["nvmlSystemGetDriverVersion"] == 1


def test_the_sampler_counts_the_nvml_calls_it_made_and_saved(clock: FakeClock) -> None:
    nvml = one_gpu()
    sampler = sampler_for(nvml, clock)

    sampler.sample()
    first_calls = nvml.device_calls
    sampler.sample()

    assert sampler.calls_made == sum(nvml.calls.values())
    per_sample_uncached = first_calls
    per_sample_cached = nvml.device_calls - first_calls
    assert sampler.calls_saved == per_sample_uncached - per_sample_cached > 0


def test_a_ttl_of_zero_asks_nvml_every_time_for_the_slow_fields(clock: FakeClock) -> None:
    nvml = one_gpu()
    sampler = sampler_for(nvml, clock, slow_field_ttl=0.0)

    for _ in range(3):
        sampler.sample()

    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 3
    assert nvml.calls["nvmlDeviceGetName"] == 1


def test_a_static_field_that_read_as_na_is_asked_again_after_the_ttl(clock: FakeClock) -> None:
    nvml = one_gpu(uuid=None)
    sampler = sampler_for(nvml, clock, slow_field_ttl=5.0)
    sampler.sample()
    sampler.sample()
    assert nvml.calls["nvmlDeviceGetUUID"] == 1

    nvml.gpus[0].uuid = "GPU-late"
    clock.advance(5)
    assert sampler.sample().gpus[0].uuid == "GPU-late"
    clock.advance(500)
    sampler.sample()
    assert nvml.calls["nvmlDeviceGetUUID"] == 2


# -- JSON -----------------------------------------------------------------------


def test_snapshots_serialise_to_json_and_back(clock: FakeClock) -> None:
    nvml = two_gpus()
    nvml.gpus[0].compute = [
        FakeProcess(pid=10, usedGpuMemory=GIB),
        FakeProcess(pid=11, usedGpuMemory=None),
    ]
    snaps = [
        sampler_for(nvml, clock, container_pids=lambda: {10}).sample(),
        sampler_for(no_library(), clock).sample(),
        sampler_for(no_gpus(), clock).sample(),
    ]

    for snap in snaps:
        text = json.dumps(snap.to_dict())
        assert GpuSnapshot.from_dict(json.loads(text)) == snap

    data = snaps[0].to_dict()
    assert data["gpus"][0]["processes"] == [
        {"pid": 10, "used_mib": 1024.0, "ours": True},
        {"pid": 11, "used_mib": None, "ours": False},
    ]
    assert data["gpus"][1]["fan_pct"] is None


# -- levels for the UI ----------------------------------------------------------


@pytest.mark.parametrize(
    ("temp", "slowdown", "level"),
    [
        (40, 87, "ok"),
        (76.9, 87, "ok"),
        (77, 87, "warm"),
        (86, 87, "warm"),
        (87, 87, "hot"),
        (95, 87, "hot"),
        (None, 87, "unknown"),
        (60, None, "unknown"),
    ],
)
def test_temperature_level_turns_warm_10_degrees_below_slowdown_and_hot_at_it(
    temp: float | None, slowdown: float | None, level: str
) -> None:
    assert temperature_level(temp, slowdown) == level


@pytest.mark.parametrize(
    ("pct", "level"),
    [(0, "low"), (9.9, "low"), (10, "moderate"), (79.9, "moderate"), (80, "high"), (100, "high")],
)
def test_usage_level_uses_fixed_10_and_80_percent_thresholds(pct: float, level: str) -> None:
    assert usage_level(pct) == level


def test_usage_level_is_unknown_for_na_and_takes_other_thresholds() -> None:
    assert usage_level(None) == "unknown"
    assert usage_level(76, high=75) == "high"
    assert usage_level(15, low=20) == "low"


# -- helpers --------------------------------------------------------------------


class _Override:
    """The stand-in with some functions replaced (odd return values, per-index failures)."""

    def __init__(self, nvml: NvmlStandIn, **functions: Any) -> None:
        self._nvml = nvml
        self._functions = functions

    def __getattr__(self, name: str) -> Any:
        if name in self._functions:
            return self._functions[name]
        return getattr(self._nvml, name)
