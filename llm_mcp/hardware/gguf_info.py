"""What a GGUF model file holds, read from its header only: shape, attention, tensors.

The header is parsed with the ``gguf`` package's own tables (value types, quantisation
block sizes) but not with ``gguf.GGUFReader``: that reader decodes every metadata array
into numpy objects (a 150k-token vocabulary takes seconds) and maps every tensor. Here
string arrays are stepped over by their lengths, only the header's pages are touched
(the file is memory-mapped; no tensor byte is read), so a 60 GB file reads in
milliseconds. Every failure is a :class:`GGUFError` whose message says why.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GGUFError", "ModelInfo", "TensorInfo", "read_model_info", "read_model_info_cached"]

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
# Bounds that no real model reaches; a header past them is corrupt, not big.
_MAX_TENSORS = 1 << 20
_MAX_KV = 1 << 20
_MAX_DIMS = 4
# Numeric arrays up to this length are kept (per-layer head counts, SWA patterns).
_KEEP_ARRAY = 1 << 16

# llama.cpp's default SWA period per architecture when the GGUF gives a window but no
# pattern (src/models/<arch>.cpp: load_swa_pattern(ml, N)); layer il is SWA unless
# il % N == N - 1.
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "llama4": 4, "gpt-oss": 2, "exaone4": 4}
_BLOCK = re.compile(r"^blk\.(\d+)\.")
_EXPERT = re.compile(r"_(ch|)exps\b|\.ffn_(up|down|gate|gate_up)_(ch|)exps")


class GGUFError(Exception):
    """The file is missing, unreadable, truncated or not a GGUF model; the message says which."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    type_name: str  # ggml type, e.g. "F32", "Q4_K"
    shape: tuple[int, ...]  # ggml order: ne0 (row length) first
    n_bytes: int
    offset: int  # from the start of the file
    block: int | None  # the layer ("blk.N."), None for input/output tensors
    is_expert: bool  # a MoE expert tensor (ffn_*_exps)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    file_size: int
    version: int
    architecture: str
    name: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_expert: int
    n_expert_used: int
    n_ff_expert: int
    sliding_window: int  # 0: none
    swa_layers: tuple[bool, ...]  # per layer; all False without sliding-window attention
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, Any] = field(repr=False)  # scalar fields and small numeric arrays
    tensor_names: tuple[str, ...] = field(default=(), repr=False)  # the tensors' names, in order

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def expert_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors if t.is_expert)

    def kv_width(self, layer: int) -> tuple[int, int]:
        """(K, V) elements per cache cell in ``layer``: KV heads times head size."""
        n_kv = self.n_head_kv[layer]
        return n_kv * self.head_dim_k, n_kv * self.head_dim_v


class _Header:
    """A cursor over the mapped header; every read is bounds-checked."""

    __slots__ = ("buf", "end", "off", "path")

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf = buf
        self.end = len(buf)
        self.off = 0
        self.path = path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.off + n > self.end:
            raise GGUFError(
                self.path, f"truncated: the file ends inside the header ({what}) at byte {self.off}"
            )

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        self.need(size, what)
        value = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += size
        return value

    def string(self, what: str) -> str:
        n = self.unpack("<Q", 8, what)
        self.need(n, what)
        raw = self.buf[self.off : self.off + n]
        self.off += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        # The hot loop of a 150k-token vocabulary: one unpack per string, bounds at the end.
        unpack = _U64.unpack_from
        buf, off = self.buf, self.off
        try:
            for _ in range(count):
                off += 8 + unpack(buf, off)[0]
        except struct.error:
            off = self.end + 1
        self.off = min(off, self.end + 1)
        if off > self.end:
            self.off = self.end
            self.need(1, what)


_U64 = struct.Struct("<Q")


def _scalar_formats() -> dict[int, tuple[str, int]]:
    from gguf import GGUFValueType as T

    return {
        T.UINT8: ("<B", 1), T.INT8: ("<b", 1), T.UINT16: ("<H", 2), T.INT16: ("<h", 2),
        T.UINT32: ("<I", 4), T.INT32: ("<i", 4), T.FLOAT32: ("<f", 4), T.BOOL: ("<?", 1),
        T.UINT64: ("<Q", 8), T.INT64: ("<q", 8), T.FLOAT64: ("<d", 8),
    }  # fmt: skip


_STRING, _ARRAY = 8, 9  # GGUFValueType.STRING / ARRAY (fixed by the format)


def _read_value(h: _Header, vtype: int, key: str, formats: dict[int, tuple[str, int]]) -> Any:
    if vtype == _STRING:
        return h.string(key)
    if vtype == _ARRAY:
        item_type = h.unpack("<I", 4, key)
        count = h.unpack("<Q", 8, key)
        if item_type == _STRING:
            h.skip_strings(count, key)
            return _ArrayLen(count)
        if item_type not in formats:
            raise GGUFError(h.path, f"not a valid GGUF: key '{key}' has an array of unknown type {item_type}")
        fmt, size = formats[item_type]
        h.need(count * size, key)
        if count > _KEEP_ARRAY:
            h.off += count * size
            return _ArrayLen(count)
        values = list(struct.iter_unpack(fmt, h.buf[h.off : h.off + count * size])) if count else []
        h.off += count * size
        return [v[0] for v in values]
    if vtype not in formats:
        raise GGUFError(h.path, f"not a valid GGUF: key '{key}' has unknown value type {vtype}")
    fmt, size = formats[vtype]
    return h.unpack(fmt, size, key)


class _ArrayLen(int):
    """An array that was stepped over: only its length is kept."""


def _per_layer(value: Any, n_layer: int, default: int) -> tuple[int, ...]:
    if isinstance(value, list) and not isinstance(value, _ArrayLen):
        got = [int(v) for v in value[:n_layer]]
        return tuple(got + [got[-1] if got else default] * (n_layer - len(got)))
    if value is None:
        return (default,) * n_layer
    return (int(value),) * n_layer


def _open_map(path: Path) -> tuple[mmap.mmap, int]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise GGUFError(path, "no such file") from None
    except IsADirectoryError:
        raise GGUFError(path, "is a directory, not a model file") from None
    except OSError as exc:
        raise GGUFError(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        import stat

        if not stat.S_ISREG(st.st_mode):
            raise GGUFError(path, "not a regular file")
        if st.st_size == 0:
            raise GGUFError(path, "empty file (0 bytes), not a GGUF model")
        try:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), st.st_size
        except (OSError, ValueError) as exc:
            raise GGUFError(path, f"cannot map: {exc}") from None
    finally:
        os.close(fd)


_SPLIT_NAME = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


def read_model_info(path: Path | str) -> ModelInfo:
    """Parse ``path``'s GGUF header; raise :class:`GGUFError` with the reason if it is not a usable model.

    A split model (``name-00001-of-00003.gguf``, as llama.cpp's gguf-split writes it) is read
    from its first file, and the tensors of every other split are added from their headers.
    """
    path = Path(path)
    version, meta, tensors, size = _read_one(path)
    count = meta.get("split.count", 0)
    if isinstance(count, int) and count > 1:
        m = _SPLIT_NAME.match(path.name)
        if not m or int(m.group(2)) != 1:
            raise GGUFError(
                path,
                f"part of a {count}-file split model: point the profile at the first file (…-00001-of-…gguf)",
            )
        for i in range(2, count + 1):
            part = path.with_name(f"{m.group(1)}-{i:05d}-of-{m.group(3)}.gguf")
            if not part.exists():
                raise GGUFError(path, f"split {i} of {count} is missing: {part.name}")
            _, _, more, more_size = _read_one(part)
            tensors += more
            size += more_size
    return _model_info(path, size, version, meta, tuple(tensors))


def _read_one(path: Path) -> tuple[int, dict[str, Any], list[TensorInfo], int]:
    buf, size = _open_map(path)
    try:
        version, meta, tensors = _parse(_Header(buf, path), size)
    finally:
        buf.close()
    return version, meta, tensors, size


def _parse(h: _Header, size: int) -> tuple[int, dict[str, Any], list[TensorInfo]]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = h.path
    if size < 4 or h.buf[:4] != _MAGIC:
        got = bytes(h.buf[:4])
        raise GGUFError(path, f"not a GGUF file (starts with {got!r}, expected b'GGUF')")
    h.off = 4
    version = h.unpack("<I", 4, "version")
    if version not in (2, 3):
        raise GGUFError(path, f"unsupported GGUF version {version} (this reader knows 2 and 3)")
    n_tensors = h.unpack("<Q", 8, "tensor count")
    n_kv = h.unpack("<Q", 8, "metadata count")
    if n_tensors > _MAX_TENSORS or n_kv > _MAX_KV:
        raise GGUFError(path, f"corrupt header: {n_tensors} tensors and {n_kv} metadata keys")

    formats = _scalar_formats()
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = h.string("metadata key")
        vtype = h.unpack("<I", 4, key)
        meta[key] = _read_value(h, vtype, key, formats)

    raw_tensors: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = h.string("tensor name")
        n_dims = h.unpack("<I", 4, name)
        if not 1 <= n_dims <= _MAX_DIMS:
            raise GGUFError(path, f"corrupt header: tensor '{name}' has {n_dims} dimensions")
        h.need(8 * n_dims, name)
        shape = struct.unpack_from(f"<{n_dims}Q", h.buf, h.off)
        h.off += 8 * n_dims
        ttype = h.unpack("<I", 4, name)
        offset = h.unpack("<Q", 8, name)
        raw_tensors.append((name, shape, ttype, offset))

    alignment = meta.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(path, f"corrupt header: general.alignment is {alignment!r}")
    data_start = -(-h.off // alignment) * alignment

    tensors: list[TensorInfo] = []
    for name, shape, ttype, offset in raw_tensors:
        try:
            qtype = GGMLQuantizationType(ttype)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GGUFError(path, f"tensor '{name}' has type {ttype}, unknown to this gguf package") from None
        if shape[0] % block:
            raise GGUFError(
                path, f"corrupt header: tensor '{name}' rows of {shape[0]} are not whole {block}-blocks"
            )
        n_bytes = shape[0] // block * type_size
        for d in shape[1:]:
            n_bytes *= d
        start = data_start + offset
        if start + n_bytes > size:
            raise GGUFError(
                path,
                f"truncated: tensor '{name}' ends at byte {start + n_bytes} but the file has {size} bytes "
                "(incomplete download or copy?)",
            )
        m = _BLOCK.match(name)
        tensors.append(
            TensorInfo(
                name=name, type_name=qtype.name, shape=tuple(shape), n_bytes=n_bytes, offset=start,
                block=int(m.group(1)) if m else None, is_expert=bool(_EXPERT.search(name)),
            )
        )  # fmt: skip
    return version, meta, tensors


def _model_info(
    path: Path, size: int, version: int, meta: dict[str, Any], tensors: tuple[TensorInfo, ...]
) -> ModelInfo:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError(path, "not a model: general.architecture is missing")

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{name}", default)

    def num(name: str, default: int = 0) -> int:
        v = key(name)
        if isinstance(v, list) and not isinstance(v, _ArrayLen):
            return max((int(x) for x in v), default=default)
        return int(v) if isinstance(v, int | float) and not isinstance(v, _ArrayLen) else default

    n_layer = num("block_count")
    if n_layer <= 0:
        raise GGUFError(path, f"not a usable model: {arch}.block_count is missing")
    n_embd = num("embedding_length")
    n_head = _per_layer(key("attention.head_count"), n_layer, 0)
    n_head_kv = _per_layer(key("attention.head_count_kv"), n_layer, 0)
    if not any(n_head_kv):
        n_head_kv = n_head
    n_head_max = max(n_head, default=0)
    head_dim_k = num("attention.key_length", n_embd // n_head_max if n_head_max else 0)
    head_dim_v = num("attention.value_length", head_dim_k)
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = int(tokens) if isinstance(tokens, int) else num("vocab_size")
    window = num("attention.sliding_window")
    swa = (False,) * n_layer
    if window > 0:
        pattern = key("attention.sliding_window_pattern")
        if isinstance(pattern, list) and not isinstance(pattern, _ArrayLen):
            swa = tuple(bool(p) for p in pattern[:n_layer]) + (False,) * max(0, n_layer - len(pattern))
        else:
            period = int(pattern) if isinstance(pattern, int) else _SWA_PERIOD.get(arch, 0)
            if period > 0:
                swa = tuple(i % period < period - 1 for i in range(n_layer))
            elif isinstance(pattern, int):
                swa = (True,) * n_layer
    name = meta.get("general.name")
    return ModelInfo(
        path=str(path), file_size=size, version=version, architecture=arch,
        name=name if isinstance(name, str) else "", n_layer=n_layer, n_embd=n_embd, n_vocab=n_vocab,
        n_ctx_train=num("context_length"), n_head=n_head, n_head_kv=n_head_kv,
        head_dim_k=head_dim_k, head_dim_v=head_dim_v, n_ff=num("feed_forward_length"),
        n_expert=num("expert_count"), n_expert_used=num("expert_used_count"),
        n_ff_expert=num("expert_feed_forward_length"), sliding_window=window, swa_layers=swa,
        tensors=tensors, metadata=meta, tensor_names=tuple(t.name for t in tensors),
    )  # fmt: skip


_cache: dict[tuple[str, int, int, int, int], ModelInfo] = {}


def read_model_info_cached(path: Path | str) -> ModelInfo:
    """:func:`read_model_info`, remembered while the file's identity, size and mtime stay the same."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return read_model_info(path)  # raises the clear error
    ident = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(ident)
    if hit is None:
        hit = read_model_info(path)
        if len(_cache) > 256:
            _cache.clear()
        _cache[ident] = hit
    return hit
