"""GPU sampling through NVML, nvitop-style.

NVML is initialised once, lazily, and shut down by `GpuSampler.close()`.
Every field is a value or None (N/A); `GpuSampler.sample()` never raises.
No GPU is a normal state: the snapshot says so, with a reason to act on.
This is the only module that talks to NVML.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, TypeVar

from llm_mcp.hardware.levels import TemperatureLevel, UsageLevel, temperature_level, usage_level

__all__ = ["GpuProcess", "GpuSample", "GpuSampler", "GpuSnapshot", "TemperatureLevel", "UsageLevel",
           "temperature_level", "usage_level"]

log = logging.getLogger("llm_mcp.hardware.gpu")

MIB = 1024 * 1024
INIT_RETRY_S = 30.0
NO_LIBRARY_REASON = "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this machine"
NO_GPUS_REASON = "NVML found no GPUs"
# NVML_VALUE_NOT_AVAILABLE as unsigned int and unsigned long long.
_NOT_AVAILABLE = frozenset({(1 << 32) - 1, (1 << 64) - 1})


_T = TypeVar("_T")
_CacheKey = tuple[int | None, str]


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    used_mib: float | None
    ours: bool

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "used_mib": self.used_mib, "ours": self.ours}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuProcess:
        return cls(pid=data["pid"], used_mib=data.get("used_mib"), ours=data.get("ours", False))


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment; None means N/A."""

    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: int | None = None
    slowdown_temp_c: int | None = None
    shutdown_temp_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    fan_pct: int | None = None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_pct(self) -> float | None:
        if self.memory_used_mib is None or not self.memory_total_mib:
            return None
        return 100.0 * self.memory_used_mib / self.memory_total_mib

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "processes"}
        data["processes"] = [p.to_dict() for p in self.processes]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuSample:
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls) if f.name != "processes"}
        procs = tuple(GpuProcess.from_dict(p) for p in data.get("processes", ()))
        return cls(**values, processes=procs)


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """Every GPU at one moment; `available=False` with a `reason` when there are none."""

    available: bool
    reason: str | None
    driver_version: str | None
    gpus: tuple[GpuSample, ...]
    taken_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "driver_version": self.driver_version,
            "gpus": [g.to_dict() for g in self.gpus],
            "taken_at": self.taken_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuSnapshot:
        return cls(
            available=data["available"],
            reason=data.get("reason"),
            driver_version=data.get("driver_version"),
            gpus=tuple(GpuSample.from_dict(g) for g in data.get("gpus", ())),
            taken_at=data["taken_at"],
        )


class GpuSampler:
    """Samples every GPU through NVML; each query that fails reads as None.

    `nvml` is the pynvml module or a stand-in with the same functions (default:
    pynvml, imported on first use). Temperature thresholds and the power limit
    are cached for `slow_field_ttl` seconds; name, UUID, total memory and the
    driver version are cached for good. Processes whose pid is in
    `container_pids()` are marked `ours`. Thread-safe.
    """

    def __init__(
        self,
        nvml: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        slow_field_ttl: float = 5.0,
        container_pids: Callable[[], AbstractSet[int]] | None = None,
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._ttl = slow_field_ttl
        self._container_pids = container_pids
        self._lock = threading.Lock()
        self._initialized = False
        self._init_failed_at: float | None = None
        self._init_failure: str | None = None
        self._device_count = 0
        self._handles: dict[int, Any] = {}
        self._cache: dict[_CacheKey, tuple[float, Any]] = {}
        self._missing: set[str] = set()
        self._logged: set[tuple[str, str]] = set()
        self._calls_made = 0
        self._calls_saved = 0

    @property
    def calls_made(self) -> int:
        """NVML functions called so far."""
        return self._calls_made

    @property
    def calls_saved(self) -> int:
        """NVML calls answered from the cache instead."""
        return self._calls_saved

    def sample(self) -> GpuSnapshot:
        with self._lock:
            now = self._now()
            try:
                return self._sample(now)
            except Exception as exc:  # a bug here must not reach the UI
                self._log_once("sample", exc, exc_info=True)
                return GpuSnapshot(False, f"GPU sampling failed: {_describe(exc)}", None, (), now)

    def close(self) -> None:
        """Shut NVML down if it was initialised; a later sample() starts it again."""
        with self._lock:
            if self._initialized:
                self._initialized = False
                try:
                    self._nvml.nvmlShutdown()
                except Exception as exc:
                    log.debug("nvmlShutdown failed: %s", _describe(exc))
            self._handles.clear()
            self._cache.clear()

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------

    def _now(self) -> float:
        try:
            return self._clock()
        except Exception:
            return time.monotonic()

    def _sample(self, now: float) -> GpuSnapshot:
        if not self._ensure_init(now):
            return GpuSnapshot(False, self._init_failure, None, (), now)
        driver = self._cached(
            (None, "driver_version"),
            math.inf,
            now,
            lambda: _opt_str(self._call("nvmlSystemGetDriverVersion")),
        )
        if self._device_count == 0:
            return GpuSnapshot(False, NO_GPUS_REASON, driver, (), now)
        ours = self._our_pids()
        gpus = tuple(self._sample_gpu(i, now, ours) for i in range(self._device_count))
        return GpuSnapshot(True, None, driver, gpus, now)

    def _ensure_init(self, now: float) -> bool:
        if self._initialized:
            return True
        if self._init_failed_at is not None and now - self._init_failed_at < INIT_RETRY_S:
            return False
        failure = self._init()
        if failure is None:
            self._initialized = True
            self._init_failed_at = self._init_failure = None
            return True
        if failure != self._init_failure:
            log.info("no GPU information: %s", failure)
        self._init_failed_at, self._init_failure = now, failure
        return False

    def _init(self) -> str | None:
        """Initialise NVML and count the GPUs; the reason it failed, or None."""
        if self._nvml is None:
            try:
                import pynvml  # type: ignore[import-untyped]  # noqa: TID251
            except ImportError:
                return "pynvml (nvidia-ml-py) is not installed"
            self._nvml = pynvml
        try:
            self._calls_made += 1
            self._nvml.nvmlInit()
        except Exception as exc:
            return self._init_failure_reason(exc)
        try:
            self._calls_made += 1
            self._device_count = int(self._nvml.nvmlDeviceGetCount())
        except Exception as exc:
            try:
                self._nvml.nvmlShutdown()
            except Exception as shutdown_exc:
                log.debug("nvmlShutdown failed: %s", _describe(shutdown_exc))
            return f"NVML could not count the GPUs: {_describe(exc)}"
        return None

    def _init_failure_reason(self, exc: Exception) -> str:
        if self._is(exc, "NVMLError_LibraryNotFound"):
            return NO_LIBRARY_REASON
        if self._is(exc, "NVMLError_DriverNotLoaded"):
            return "NVIDIA driver not loaded: NVML cannot reach a GPU (is nvidia.ko loaded?)"
        if self._is(exc, "NVMLError_NoPermission"):
            return "no permission to use NVML (check access to /dev/nvidia*)"
        if self._is(exc, "NVMLError_LibRmVersionMismatch"):
            return "NVIDIA driver and NVML library versions differ (reload the driver or reboot)"
        return f"NVML initialisation failed: {_describe(exc)}"

    def _is(self, exc: BaseException, class_name: str) -> bool:
        cls = getattr(self._nvml, class_name, None)
        return isinstance(cls, type) and isinstance(exc, cls)

    def _call(self, name: str, *args: Any) -> Any:
        """Call an NVML function; None for N/A, whatever goes wrong."""
        if name in self._missing:
            return None
        try:
            fn = getattr(self._nvml, name)
        except AttributeError:
            self._mark_missing(name, "this nvidia-ml-py does not have it")
            return None
        try:
            self._calls_made += 1
            return fn(*args)
        except Exception as exc:
            if self._is(exc, "NVMLError_NotSupported"):
                return None
            if self._is(exc, "NVMLError_FunctionNotFound") or self._is(exc, "NVMLLibraryMismatchError"):
                self._mark_missing(name, "the NVIDIA driver does not provide it")
                return None
            self._log_once(name, exc)
            return None

    def _mark_missing(self, name: str, why: str) -> None:
        self._missing.add(name)
        log.warning("NVML function %s is missing (%s); it reads as N/A", name, why)

    def _log_once(self, where: str, exc: BaseException, *, exc_info: bool = False) -> None:
        key = (where, type(exc).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s failed: %s; it reads as N/A", where, _describe(exc), exc_info=exc_info)

    def _cached(self, key: _CacheKey, ttl: float, now: float, query: Callable[[], _T | None]) -> _T | None:
        hit = self._cache.get(key)
        if hit is not None and now < hit[0]:
            self._calls_saved += 1
            value: _T | None = hit[1]
            return value
        value = query()
        # A field that read as N/A is asked again after the ordinary ttl.
        self._cache[key] = (now + (ttl if value is not None else self._ttl), value)
        return value

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is not None:
            self._calls_saved += 1
            return handle
        handle = self._call("nvmlDeviceGetHandleByIndex", index)
        if handle is not None:
            self._handles[index] = handle
        return handle

    def _our_pids(self) -> AbstractSet[int]:
        if self._container_pids is None:
            return frozenset()
        try:
            return self._container_pids()
        except Exception as exc:
            self._log_once("container_pids", exc)
            return frozenset()

    def _sample_gpu(self, i: int, now: float, ours: AbstractSet[int]) -> GpuSample:
        handle = self._handle(i)
        if handle is None:
            return GpuSample(index=i)
        const = self._const
        util = self._call("nvmlDeviceGetUtilizationRates", handle)
        mem = self._call("nvmlDeviceGetMemoryInfo", handle)
        return GpuSample(
            index=i,
            name=self._static_str(i, now, "nvmlDeviceGetName", handle),
            uuid=self._static_str(i, now, "nvmlDeviceGetUUID", handle),
            utilization_pct=_opt_float(getattr(util, "gpu", None)),
            memory_used_mib=_mib(getattr(mem, "used", None)),
            memory_total_mib=self._memory_total(i, _mib(getattr(mem, "total", None))),
            temperature_c=_opt_int(
                self._call("nvmlDeviceGetTemperature", handle, const("NVML_TEMPERATURE_GPU", 0))
            ),
            slowdown_temp_c=self._threshold(i, handle, now, "SLOWDOWN", 1),
            shutdown_temp_c=self._threshold(i, handle, now, "SHUTDOWN", 0),
            power_w=_watts(self._call("nvmlDeviceGetPowerUsage", handle)),
            power_limit_w=self._cached(
                (i, "power_limit"),
                self._ttl,
                now,
                lambda: _watts(self._call("nvmlDeviceGetEnforcedPowerLimit", handle)),
            ),
            fan_pct=_opt_int(self._call("nvmlDeviceGetFanSpeed", handle)),
            processes=self._processes(handle, ours),
        )

    def _static_str(self, i: int, now: float, name: str, handle: Any) -> str | None:
        return self._cached((i, name), math.inf, now, lambda: _opt_str(self._call(name, handle)))

    def _const(self, name: str, default: int) -> int:
        value = getattr(self._nvml, name, default)
        return value if isinstance(value, int) else default

    def _threshold(self, i: int, handle: Any, now: float, which: str, default: int) -> int | None:
        kind = self._const(f"NVML_TEMPERATURE_THRESHOLD_{which}", default)
        return self._cached(
            (i, f"threshold_{which}"),
            self._ttl,
            now,
            lambda: _opt_int(self._call("nvmlDeviceGetTemperatureThreshold", handle, kind)),
        )

    def _memory_total(self, i: int, live: float | None) -> float | None:
        key: _CacheKey = (i, "memory_total")
        if live is not None:
            self._cache[key] = (math.inf, live)
            return live
        hit = self._cache.get(key)
        return None if hit is None else float(hit[1])

    def _processes(self, handle: Any, ours: AbstractSet[int]) -> tuple[GpuProcess, ...]:
        by_pid: dict[int, GpuProcess] = {}
        for name in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            try:
                for info in self._call(name, handle) or ():
                    pid = _opt_int(getattr(info, "pid", None))
                    if pid is None:
                        continue
                    used = _mib(getattr(info, "usedGpuMemory", None))
                    seen = by_pid.get(pid)
                    if seen is None or (seen.used_mib is None and used is not None):
                        by_pid[pid] = GpuProcess(pid=pid, used_mib=used, ours=pid in ours)
            except Exception as exc:  # an odd return value, not an NVML error
                self._log_once(name, exc)
        return tuple(by_pid.values())


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__name__


def _clean(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value in _NOT_AVAILABLE or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _opt_int(value: Any) -> int | None:
    number = _clean(value)
    return None if number is None else int(number)


def _opt_float(value: Any) -> float | None:
    number = _clean(value)
    return None if number is None else float(number)


def _opt_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _mib(value: Any) -> float | None:
    number = _clean(value)
    return None if number is None else number / MIB


def _watts(value: Any) -> float | None:
    number = _clean(value)
    return None if number is None else number / 1000.0
