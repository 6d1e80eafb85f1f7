"""A real full filesystem for tests: a small tmpfs mounted on a test directory, then filled.

Needs root (mount). Creating files and directories still works on a full tmpfs
(inodes are not counted against its size); writing data fails with ENOSPC, as
on a full disk.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILLER = ".filler"


@contextmanager
def full_tmpfs(path: Path, size: str = "1m", *, filled: bool = True) -> Iterator[Path]:
    """Mount a tmpfs of `size` on `path` and fill it to the last byte (unless `filled=False`:
    the test puts its files there first, then calls fill); unmount at the end."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        if filled:
            fill(path)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path) -> None:
    """Write a filler file until the filesystem says it is full."""
    fd = os.open(path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return
                block = block[: len(block) // 2]
    finally:
        os.close(fd)


def free(path: Path) -> None:
    """Make room again (the filler goes)."""
    (path / FILLER).unlink()
