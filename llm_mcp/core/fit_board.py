"""The pre-flight verdict of every profile, cached, for list_models and the switch.

An estimate is kept per profile while its model file (device, inode, size, mtime) and its
llama-server arguments stay the same, and the number of GPUs too; its verdict is kept
while free memory stays within the estimate's band of the figures it was made with. So a
list_models call costs a few dictionary look-ups, and a switch re-reads nothing but the
memory figures. Header reading and estimating run in worker threads (a pathological
``-ot`` pattern may take its 0.5 s budget); GGUF headers are cached by gguf_info as well.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from llm_mcp.config.models_conf import Profile
from llm_mcp.core.preflight import MemorySnapshot, Preflight, check, unknown
from llm_mcp.hardware.fit_estimate import Estimate, estimate
from llm_mcp.hardware.fit_settings import SettingsError, settings_from_args
from llm_mcp.hardware.gguf_info import GGUFError, read_model_info_cached

__all__ = ["FitBoard"]

log = logging.getLogger("llm_mcp.core.fit_board")

_Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class _Estimated:
    key: _Key
    estimate: Estimate | None
    error: str | None


@dataclass(frozen=True, slots=True)
class _Judged:
    key: _Key
    memory: MemorySnapshot
    result: Preflight


def _key(profile: Profile, n_gpus: int) -> _Key:
    path = profile.model_path()
    try:
        st = os.stat(path)
        ident: object = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError as exc:
        ident = exc.strerror or str(exc)
    return (str(path), ident, tuple(profile.server_args()), n_gpus)


def _seen_by(profile: Profile, memory: MemorySnapshot) -> tuple[MemorySnapshot, dict[str, str], str | None]:
    """The devices the profile's container gets: the memory on them, their names there -> here
    (a `gpus` list: its first GPU is the container's gpu0), or why they cannot be told."""
    if profile.gpus is None:  # every GPU
        return memory, {}, None
    host = tuple(d for d in memory.devices if d.device == "host")
    if profile.gpus == ():  # `gpus = none`: no GPU, everything is on the host
        return replace(memory, devices=host), {}, None
    if not all(g.isdigit() for g in profile.gpus):
        return memory, {}, ("`gpus` names GPUs by UUID and memory is read by index: write indices "
                            "(`nvidia-smi -L`) to have the pre-flight judge this profile")
    chosen = [f"gpu{g}" for g in sorted({int(g) for g in profile.gpus})]
    gpus = [d for name in chosen if (d := memory.device(name)) is not None]
    if len(gpus) < len(chosen):
        seen = ", ".join(d.device for d in memory.devices if d.device != "host") or "none"
        return memory, {}, f"`gpus = {profile.gpus_text}` names a GPU this machine lacks (it has: {seen})"
    names = {f"gpu{i}": d.device for i, d in enumerate(gpus)}
    # the estimate is made for len(gpus) GPUs, then named as here; the snapshot keeps this machine's names
    narrowed = replace(memory, devices=(*host, *gpus))
    return narrowed, names, None


class FitBoard:
    """Per-profile estimates and verdicts; see the module docstring."""

    def __init__(self, limiter: anyio.CapacityLimiter | None = None) -> None:
        self._limiter = limiter or anyio.CapacityLimiter(2)
        self._estimates: dict[str, _Estimated] = {}
        self._judged: dict[str, _Judged] = {}

    def _estimate(self, profile: Profile, key: _Key, n_gpus: int) -> _Estimated:
        """Blocking: read the header (cached by file identity) and estimate."""
        hit = self._estimates.get(profile.id)
        if hit is not None and hit.key == key:
            return hit
        try:
            info = read_model_info_cached(profile.model_path())
            est = estimate(info, settings_from_args(profile.server_args()), n_gpus=n_gpus)
            done = _Estimated(key, est, None)
        except GGUFError as exc:
            done = _Estimated(key, None, f"cannot read the model file: {exc}")
        except SettingsError as exc:
            done = _Estimated(key, None, f"cannot estimate the flags: {exc}")
        except Exception as exc:  # an estimator bug must not block a switch or a listing
            log.exception("estimating %s failed", profile.id)
            done = _Estimated(key, None, f"estimate failed: {exc}")
        self._estimates[profile.id] = done
        return done

    def _judge(self, profile: Profile, memory: MemorySnapshot, *, fresh: bool) -> Preflight:
        """Blocking. ``fresh``: always compare with these figures (the switch's pre-flight)."""
        memory, names, why_not = _seen_by(profile, memory)
        key = _key(profile, memory.n_gpus)
        done = self._estimate(profile, key, memory.n_gpus) if why_not is None else None
        if done is None or done.estimate is None:
            result = unknown(why_not or (done and done.error) or "no estimate")
        else:
            est = done.estimate
            if names:  # the container's gpu0, gpu1, ... are the machine's GPUs `gpus` lists
                est = replace(est, devices=tuple(replace(d, device=names.get(d.device, d.device))
                                                 for d in est.devices))
            old = self._judged.get(profile.id)
            bands = {d.device: d.band for d in est.devices}
            if (not fresh and old is not None and old.key == key and old.memory.replacing == memory.replacing
                    and not memory.moved_more_than(old.memory, bands)):
                return old.result
            result = check(est, memory)
        self._judged[profile.id] = _Judged(key, memory, result)
        return result

    async def check(self, profile: Profile, memory: MemorySnapshot) -> Preflight:
        """The pre-flight of one profile against ``memory``, off the event loop."""
        return await anyio.to_thread.run_sync(lambda: self._judge(profile, memory, fresh=True),
                                              limiter=self._limiter, abandon_on_cancel=True)

    async def refresh(self, profiles: Iterable[Profile], memory: MemorySnapshot) -> None:
        """Bring every profile's verdict up to date with ``memory`` (one worker thread call)."""
        todo = list(profiles)

        def run() -> None:
            for profile in todo:
                self._judge(profile, memory, fresh=False)
            for gone in set(self._judged) - {p.id for p in todo}:
                self._judged.pop(gone, None)
                self._estimates.pop(gone, None)

        await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def entry(self, profile_id: str) -> dict[str, Any]:
        """The wire "fit" of a profile: the last verdict, or unknown before the first."""
        judged = self._judged.get(profile_id)
        if judged is None:
            return unknown("not estimated yet").to_dict()
        return judged.result.to_dict()
