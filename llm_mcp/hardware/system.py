"""Host CPU, memory and load through psutil, and a container's share from `docker stats`.

`SystemSampler.sample()` never raises: a value it cannot read is None.
`container_stats_from_docker` is pure arithmetic on a Docker stats dict.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger("llm_mcp.hardware.system")

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SystemSample:
    """The host at one moment; None means N/A (cpu_pct is None on the first sample)."""

    cpu_pct: float | None
    per_cpu_pct: tuple[float, ...]
    ram_used_mib: float | None
    ram_total_mib: float | None
    swap_used_mib: float | None
    load_1: float | None
    load_5: float | None
    load_15: float | None
    taken_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_pct": self.cpu_pct,
            "per_cpu_pct": list(self.per_cpu_pct),
            "ram_used_mib": self.ram_used_mib,
            "ram_total_mib": self.ram_total_mib,
            "swap_used_mib": self.swap_used_mib,
            "load_1": self.load_1,
            "load_5": self.load_5,
            "load_15": self.load_15,
            "taken_at": self.taken_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemSample:
        return cls(
            cpu_pct=data.get("cpu_pct"),
            per_cpu_pct=tuple(data.get("per_cpu_pct", ())),
            ram_used_mib=data.get("ram_used_mib"),
            ram_total_mib=data.get("ram_total_mib"),
            swap_used_mib=data.get("swap_used_mib"),
            load_1=data.get("load_1"),
            load_5=data.get("load_5"),
            load_15=data.get("load_15"),
            taken_at=data["taken_at"],
        )


class SystemSampler:
    """Samples the host through `psutil_module` (psutil, or a stand-in with its functions).

    CPU percentages cover the time since the previous sample. psutil keeps that
    state per thread, so the first sample() in each thread primes it and reports
    the CPU as None. RAM used is total minus available, as htop and btop show it.
    """

    def __init__(self, psutil_module: Any = psutil, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._psutil = psutil_module
        self._clock = clock
        self._primed: set[int] = set()
        self._logged: set[str] = set()

    def sample(self) -> SystemSample:
        try:
            taken_at = self._clock()
        except Exception:
            taken_at = time.monotonic()
        cpu, per_cpu = self._cpu()
        ram_used = ram_total = swap_used = None
        memory = self._read("virtual_memory")
        if memory is not None:
            ram_total = _mib(getattr(memory, "total", None))
            available = _mib(getattr(memory, "available", None))
            if ram_total is not None and available is not None:
                ram_used = ram_total - available
        swap = self._read("swap_memory")
        if swap is not None:
            swap_used = _mib(getattr(swap, "used", None))
        loads = self._read("getloadavg")
        load_1 = load_5 = load_15 = None
        if isinstance(loads, tuple | list) and len(loads) == 3:
            load_1, load_5, load_15 = (_num(x) for x in loads)
        return SystemSample(
            cpu_pct=cpu,
            per_cpu_pct=per_cpu,
            ram_used_mib=ram_used,
            ram_total_mib=ram_total,
            swap_used_mib=swap_used,
            load_1=load_1,
            load_5=load_5,
            load_15=load_15,
            taken_at=taken_at,
        )

    def _cpu(self) -> tuple[float | None, tuple[float, ...]]:
        thread = threading.get_ident()
        total = self._read("cpu_percent", interval=None)
        per_cpu = self._read("cpu_percent", interval=None, percpu=True)
        if thread not in self._primed:
            self._primed.add(thread)
            return None, ()
        cpus: tuple[float, ...] = ()
        if isinstance(per_cpu, list | tuple):
            cpus = tuple(x for x in (_num(v) for v in per_cpu) if x is not None)
        return _num(total), cpus

    def _read(self, name: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._psutil, name)(**kwargs)
        except Exception as exc:
            if name not in self._logged:
                self._logged.add(name)
                log.warning("psutil.%s failed: %s; it reads as N/A", name, exc)
            return None


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """A container's CPU and memory as `docker stats` shows them; None means N/A."""

    cpu_pct: float | None
    mem_used_mib: float | None
    mem_limit_mib: float | None

    @property
    def mem_pct(self) -> float | None:
        if self.mem_used_mib is None or not self.mem_limit_mib:
            return None
        return 100.0 * self.mem_used_mib / self.mem_limit_mib

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_pct": self.cpu_pct,
            "mem_used_mib": self.mem_used_mib,
            "mem_limit_mib": self.mem_limit_mib,
        }


def container_stats_from_docker(stats: Mapping[str, Any]) -> ContainerStats:
    """Turn one Docker Engine stats response into what `docker stats` would print.

    CPU % = container CPU delta / host CPU delta * online CPUs * 100, between
    `precpu_stats` and `cpu_stats`. Memory used = usage minus the inactive page
    cache (`total_inactive_file` on cgroup v1, `inactive_file` on v2, else `cache`).
    Missing pieces (a stopped container, the first streamed sample) read as None.
    """
    return ContainerStats(
        cpu_pct=_docker_cpu_pct(stats),
        mem_used_mib=_mib(_docker_mem_used(_dict(stats.get("memory_stats")))),
        mem_limit_mib=_mib(_dict(stats.get("memory_stats")).get("limit")),
    )


def _docker_cpu_pct(stats: Mapping[str, Any]) -> float | None:
    cpu, pre = _dict(stats.get("cpu_stats")), _dict(stats.get("precpu_stats"))
    total = _num(_dict(cpu.get("cpu_usage")).get("total_usage"))
    pre_total = _num(_dict(pre.get("cpu_usage")).get("total_usage"))
    system = _num(cpu.get("system_cpu_usage"))
    pre_system = _num(pre.get("system_cpu_usage"))
    if total is None or pre_total is None or system is None or pre_system is None:
        return None
    online = _num(cpu.get("online_cpus")) or float(len(_dict(cpu.get("cpu_usage")).get("percpu_usage") or ()))
    cpu_delta, system_delta = total - pre_total, system - pre_system
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * online * 100.0


def _docker_mem_used(memory: Mapping[str, Any]) -> float | None:
    usage = _num(memory.get("usage"))
    if usage is None:
        return None
    detail = _dict(memory.get("stats"))
    for key in ("total_inactive_file", "inactive_file", "cache"):
        cache = _num(detail.get(key))
        if cache is not None and cache < usage:
            return usage - cache
    return usage


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _mib(value: Any) -> float | None:
    number = _num(value)
    return None if number is None else number / MIB
