"""A STAND-IN for the pynvml functions that `llm_mcp.hardware.gpu` calls. It is not NVML.

There is no GPU on the machines that run the unit tests, so these tests hand
`GpuSampler` this object instead of the pynvml module. It answers from plain
`FakeGpu` records, raises pynvml's real exception classes (so the code under
test sees the real types), and counts every call. Per test it can: lack the
NVML library, have no GPUs, have one or several, make a function raise
(`fail`), or lack a function altogether (`remove`). The real NVML is exercised
by bench/gpu_device_check.py on a machine with a GPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml  # type: ignore[import-untyped]  # noqa: TID251  (real pynvml types)

_T = TypeVar("_T")

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass
class FakeProcess:
    """What nvmlDeviceGet*RunningProcesses returns per process (usedGpuMemory in bytes)."""

    pid: int
    usedGpuMemory: int | None  # pynvml's field name


@dataclass
class FakeGpu:
    """One pretend GPU; a field set to None answers NVMLError_NotSupported."""

    name: str | None = "NVIDIA GeForce RTX 4090"
    uuid: str | None = "GPU-11111111-2222-3333-4444-555555555555"
    utilization: int | None = 37
    memory_used: int | None = 10 * GIB
    memory_total: int | None = 24 * GIB
    temperature: int | None = 61
    slowdown: int | None = 87
    shutdown: int | None = 92
    power_mw: int | None = 215_500
    power_limit_mw: int | None = 450_000
    fan: int | None = 40
    compute: list[FakeProcess] = field(default_factory=list)
    graphics: list[FakeProcess] = field(default_factory=list)


@dataclass
class _Memory:
    total: int
    used: int
    free: int


@dataclass
class _Utilization:
    gpu: int
    memory: int


class NvmlStandIn:
    """Looks like the pynvml module to `GpuSampler`; see the module docstring."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVMLError_Uninitialized = pynvml.NVMLError_Uninitialized
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVMLError_Unknown = pynvml.NVMLError_Unknown
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
    NVML_VALUE_NOT_AVAILABLE_ULONGLONG = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value

    def __init__(
        self,
        gpus: Iterable[FakeGpu] = (),
        *,
        library_missing: bool = False,
        driver_version: str = "560.35.03",
    ) -> None:
        self.gpus = list(gpus)
        self.library_missing = library_missing
        self.driver_version = driver_version
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, Callable[[], BaseException]] = {}
        self.missing: set[str] = set()
        self.initialized = 0

    def fail(self, name: str, error: Callable[[], BaseException]) -> None:
        """Make every call of `name` raise `error()` (an exception class or factory)."""
        self.failures[name] = error

    def remove(self, name: str) -> None:
        """Make `name` absent, as in an older pynvml: looking it up raises AttributeError."""
        self.missing.add(name)

    def __getattr__(self, name: str) -> Any:
        impl = getattr(type(self), f"_{name}", None) if name.startswith("nvml") else None
        if impl is None or name in self.missing:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            self.calls[name] += 1
            if name in self.failures:
                raise self.failures[name]()
            if name != "nvmlInit" and not self.initialized:
                raise pynvml.NVMLError_Uninitialized()
            return impl(self, *args)

        return call

    @property
    def device_calls(self) -> int:
        """Calls of everything but init, count and shutdown."""
        lifecycle = {"nvmlInit", "nvmlDeviceGetCount", "nvmlShutdown"}
        return sum(n for name, n in self.calls.items() if name not in lifecycle)

    # -- the functions, each answering from a FakeGpu --------------------

    def _nvmlInit(self) -> None:
        if self.library_missing:
            raise pynvml.NVMLError_LibraryNotFound()
        self.initialized += 1

    def _nvmlShutdown(self) -> None:
        self.initialized -= 1

    def _nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    def _nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def _nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return self.gpus[index]

    def _nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return _supported(gpu.name)

    def _nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return _supported(gpu.uuid)

    def _nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> _Utilization:
        return _Utilization(gpu=_supported(gpu.utilization), memory=0)

    def _nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> _Memory:
        total, used = _supported(gpu.memory_total), _supported(gpu.memory_used)
        return _Memory(total=total, used=used, free=total - used)

    def _nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return _supported(gpu.temperature)

    def _nvmlDeviceGetTemperatureThreshold(self, gpu: FakeGpu, threshold: int) -> int:
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            return _supported(gpu.slowdown)
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
            return _supported(gpu.shutdown)
        raise pynvml.NVMLError_NotSupported()

    def _nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return _supported(gpu.power_mw)

    def _nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        return _supported(gpu.power_limit_mw)

    def _nvmlDeviceGetFanSpeed(self, gpu: FakeGpu) -> int:
        return _supported(gpu.fan)

    def _nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[FakeProcess]:
        return list(gpu.compute)

    def _nvmlDeviceGetGraphicsRunningProcesses(self, gpu: FakeGpu) -> list[FakeProcess]:
        return list(gpu.graphics)


def _supported(value: _T | None) -> _T:
    if value is None:
        raise pynvml.NVMLError_NotSupported()
    return value


# -- ready-made machines ------------------------------------------------------


def no_library() -> NvmlStandIn:
    return NvmlStandIn(library_missing=True)


def no_gpus() -> NvmlStandIn:
    return NvmlStandIn([])


def one_gpu(**overrides: Any) -> NvmlStandIn:
    return NvmlStandIn([FakeGpu(**overrides)])


def two_gpus() -> NvmlStandIn:
    return NvmlStandIn(
        [
            FakeGpu(),
            FakeGpu(
                name="NVIDIA RTX A6000",
                uuid="GPU-66666666-7777-8888-9999-000000000000",
                utilization=95,
                memory_used=40 * GIB,
                memory_total=48 * GIB,
                temperature=84,
                slowdown=93,
                shutdown=98,
                power_mw=290_000,
                power_limit_mw=300_000,
                fan=None,
            ),
        ]
    )
