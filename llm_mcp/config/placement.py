"""Which profiles can run side by side: the conflict rule, pure (no I/O, no Docker, no NVML).

Two profiles conflict when they are the same model, or share an engine and one
runs exclusive, or they share a GPU (`all` shares with every GPU set, `none`
with nothing), or both pin the same host port. A config without placement keys
puts every profile on `local` with all GPUs: every pair conflicts, which is the
one-model-at-a-time behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from llm_mcp.config.engines import is_uuid, normalise_gpu
from llm_mcp.config.models_conf import Profile

GpuUuids = Mapping[str, Sequence[str]]  # engine -> its GPU UUIDs, index i at position i


def conflict(a: Profile, b: Profile, gpu_uuids: GpuUuids | None = None) -> str | None:
    """None when `a` and `b` can run at once; else one short sentence saying why not.

    `gpu_uuids` tells which index is which UUID on an engine; without it an index
    and a UUID on the same engine might be one GPU, and count as a conflict.
    """
    if a.id == b.id:
        return "same model"
    if a.engine != b.engine:
        return None
    on = f"on engine {a.engine}"
    for p in (a, b):
        if p.exclusive:
            return f"{p.id} runs exclusive {on}"
    shared = _shared_gpus(a, b, (gpu_uuids or {}).get(a.engine, ()))
    if shared:
        return shared + f" {on}"
    if a.port is not None and a.port == b.port:
        return f"both publish port {a.port} {on}"
    return None


def conflicting(profile: Profile, others: Iterable[Profile],
                gpu_uuids: GpuUuids | None = None) -> list[tuple[Profile, str]]:
    """The profiles of `others` that cannot run beside `profile`, each with the reason, in order.

    `profile` itself (the same id) is skipped: a model does not stand in its own way.
    """
    out: list[tuple[Profile, str]] = []
    for other in others:
        if other.id != profile.id and (why := conflict(profile, other, gpu_uuids)) is not None:
            out.append((other, why))
    return out


def _shared_gpus(a: Profile, b: Profile, uuids: Sequence[str]) -> str | None:
    """"both use GPU 0", "both use all GPUs", "... may share a GPU", or None."""
    if a.gpus == () or b.gpus == ():
        return None
    if a.gpus is None or b.gpus is None:  # `all` includes each GPU the other names
        named = a.gpus if a.gpus is not None else b.gpus
        return "both use all GPUs" if named is None else f"both use {_gpu_words(named)}"
    index = {_normal(u): str(i) for i, u in enumerate(uuids)}
    ours, theirs = _canonical(a.gpus, index), _canonical(b.gpus, index)
    common = [g for g in ours if g in theirs]
    if common:
        return f"both use {_gpu_words(tuple(common))}"
    # Left: indices against UUIDs the engine's list does not place. They may be the same card.
    unplaced = [(g, h) for g in ours for h in theirs if is_uuid(g) != is_uuid(h)]
    if unplaced:
        g, h = unplaced[0]
        return (f"{a.id} (GPU {g}) and {b.id} (GPU {h}) may share a GPU (declare the engine's gpus "
                "by UUID to tell)")
    return None


def _canonical(gpus: tuple[str, ...], index: Mapping[str, str]) -> list[str]:
    """A UUID the engine's list places becomes its index, so both spellings compare equal."""
    return [index.get(_normal(g), _normal(g)) for g in gpus]


def _normal(gpu: str) -> str:
    """normalise_gpu, without raising: an id NVML reports in another form is compared as it is."""
    try:
        return normalise_gpu(gpu)
    except ValueError:
        return gpu.strip()


def _gpu_words(gpus: tuple[str, ...]) -> str:
    return f"GPU {gpus[0]}" if len(gpus) == 1 else f"GPUs {', '.join(gpus)}"
