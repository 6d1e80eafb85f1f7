"""The daemon's two locks: one daemon per socket, and one daemon per instance (set of containers).

Each is an flock on a private file (0600, never through a symlink) that says who
holds it. The kernel drops an flock when its holder dies, even by SIGKILL, so a
lock is never stale; a daemon that is shutting down still holds its locks for a
moment, which is why acquiring waits briefly for a dying holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_mcp.util.safe_files import open_private_fd

DYING_WAIT = 5.0  # how long a starting daemon waits for a dying one to let go


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is what it wrote inside (may be empty)."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is held by pid {holder.get('pid', '?')}")


class LockFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self, content: str) -> bool:
        """Take the lock without waiting and write `content` into it; False if another holds it.

        Raises OSError (UnsafePathError included) when the file cannot be used.
        """
        fd = open_private_fd(self.path, "r+")  # no truncation before we hold the lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, content.encode(), 0)
        self._fd = fd
        return True

    def acquire(self, content: str, *, wait: float = DYING_WAIT,
                give_up: Callable[[], bool] = lambda: False,
                on_wait: Callable[[dict[str, Any]], None] = lambda holder: None) -> None:
        """Take the lock, waiting up to `wait` seconds for a holder that is going away.

        `give_up()` is asked while waiting: true means the holder is alive and well
        (its socket answers), so waiting longer is pointless. `on_wait(holder)` is
        called once, when the waiting starts. Raises LockHeld.
        """
        deadline = time.monotonic() + wait
        delay = 0.01
        waiting = False
        while not self.try_acquire(content):
            if give_up() or time.monotonic() >= deadline:
                raise LockHeld(self.path, self.holder())
            if not waiting:
                waiting = True
                on_wait(self.holder())
            time.sleep(delay)
            delay = min(0.05, delay * 1.5)

    def holder(self) -> dict[str, Any]:
        """What the holder wrote: {"pid": N, ...} (a bare pid is read as {"pid": N}); {} if unreadable."""
        return read_holder(self.path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock
            self._fd = None


def read_holder(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        text = os.read(fd, 4096).decode(errors="replace").strip()
    except OSError:
        return {}
    finally:
        os.close(fd)
    if text.isdigit():
        return {"pid": int(text)}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def socket_lock(socket_path: Path) -> LockFile:
    """Beside the socket; it holds the daemon's pid alone, so `kill $(cat SOCKET.lock)` works."""
    return LockFile(socket_path.with_name(socket_path.name + ".lock"))


def instance_lock(state: Path, instance: str) -> LockFile:
    """In the state dir: whoever holds it drives the instance's containers."""
    return LockFile(state / f"instance-{instance}.lock")


def instance_content(socket_path: Path) -> str:
    return json.dumps({"pid": os.getpid(), "socket": str(socket_path), "since": time.time()}) + "\n"


def alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
