"""Private files and directories that never follow a symlink: 0600 files in 0700 dirs, ours only.

The daemon's state dir and socket dir may sit in places other users can write
(/tmp, a shared home): a symlink or a file planted there must make us refuse
with a clear error, never write through it. Every check is on the opened file
descriptor (fstat), so nothing can be swapped between the check and the use.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700

# "a": append, "w": write from the start (truncated after the checks), "r+": read and write, "r": read
_FLAGS = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "w": os.O_WRONLY | os.O_CREAT,
          "r+": os.O_RDWR | os.O_CREAT, "r": os.O_RDONLY}


class UnsafePathError(OSError):
    """A path we refuse to use: a symlink, not ours, or not the kind of file expected."""


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700, or check an existing one; returns it.

    An existing directory must be a real directory (not a symlink) owned by us;
    group/other permissions on it are removed.
    """
    _make_missing(path)
    st = os.lstat(path)
    _check_dir(path, st)
    if st.st_mode & 0o077:
        os.chmod(path, DIR_MODE, follow_symlinks=False)
    return path


def usable_dir(path: Path) -> Path:
    """Create `path` 0700 if missing; an existing one must be a real directory (not a symlink).

    For a directory the user chose that may be shared (the parent of an explicit
    --socket such as /tmp): we neither take it over nor change its mode.
    """
    _make_missing(path)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symlink; refusing to use it (give the real directory)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} is not a directory")
    return path


def _make_missing(path: Path) -> None:
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        # os.mkdir applies the umask to 0o700: never wider than 0700, whatever the umask.
        with contextlib.suppress(FileExistsError):  # another process made it: checked below
            os.mkdir(directory, DIR_MODE)


def _check_dir(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symlink; refusing to use it as a private directory "
                              "(remove the link, or point the setting at the real directory)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); "
                              "refusing to keep private files there")


def open_private(path: Path, mode: str = "a", *, binary: bool = False,
                 encoding: str | None = "utf-8") -> IO[Any]:
    """Open a private file: created 0600, never through a symlink, ours and regular.

    mode: "a" append, "w" write (truncated once checked), "r+" read/write, "r" read.
    An existing file with looser permissions is tightened to 0600.
    """
    fd = open_private_fd(path, mode)
    text_mode = {"a": "a", "w": "w", "r+": "r+", "r": "r"}[mode]
    if binary:
        return os.fdopen(fd, text_mode + "b")
    return os.fdopen(fd, text_mode, encoding=encoding)


def open_private_fd(path: Path, mode: str = "a") -> int:
    """`open_private` as a raw file descriptor (for flock or os.write)."""
    try:
        flags = _FLAGS[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {', '.join(_FLAGS)}") from None
    # O_NONBLOCK: opening a FIFO planted at the path must not hang us; cleared once it is checked.
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        try:
            st = os.lstat(path)
        except OSError:
            raise exc from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{path} is a symlink; refusing to follow it (remove it: llm-mcp "
                                  "creates this file itself)") from None
        if not stat.S_ISREG(st.st_mode):  # a FIFO without a reader: ENXIO
            raise UnsafePathError(f"{path} is not a regular file; refusing to use it (remove it)") from None
        raise exc from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is not a regular file; refusing to use it (remove it)")
        if st.st_uid != os.geteuid():
            raise UnsafePathError(f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); "
                                  "refusing to use it (remove it)")
        if st.st_nlink > 1:
            raise UnsafePathError(f"{path} has {st.st_nlink} hard links; refusing to write through a "
                                  "link to another file (remove it)")
        if st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
        os.set_blocking(fd, True)
        if mode == "w":
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Replace `path` with `data` at once: readers see the old or the new file, never a part.

    The temporary file is created 0600 beside the target (mkstemp: O_EXCL, no
    symlink followed); os.replace swaps a symlink at `path` itself, never its target.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def socket_problem(path: Path, st: os.stat_result) -> str | None:
    """Why a Unix socket at `path` (with its lstat) must not be talked to, or None if it is ours."""
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink, not the daemon's socket; refusing to connect (remove it)"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} is not a socket; refusing to connect (remove it, or choose another --socket)"
    if st.st_uid != os.geteuid():
        return (f"the socket {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): another "
                "user's daemon; refusing to talk to it (use your own --socket or LLM_MCP_SOCKET)")
    return None
