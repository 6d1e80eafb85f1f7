"""Private files and dirs: 0600 in 0700, no symlink followed, nothing of another user's used."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path

import pytest

from llm_mcp.util.safe_files import (
    UnsafePathError,
    open_private,
    open_private_fd,
    private_dir,
    socket_problem,
    usable_dir,
    write_atomic,
)

NOBODY = pwd.getpwnam("nobody").pw_uid


def _mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


def test_a_new_private_dir_and_its_missing_parents_are_0700(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask gives nothing to group/other
    try:
        target = private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert stat.S_ISDIR(os.lstat(directory).st_mode) and _mode(directory) == 0o700


def test_an_existing_private_dir_with_loose_bits_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "state"
    loose.mkdir()
    loose.chmod(0o755)
    private_dir(loose)
    assert _mode(loose) == 0o700


def test_a_symlinked_private_dir_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    real.chmod(0o755)
    link = tmp_path / "state"
    link.symlink_to(real)
    with pytest.raises(UnsafePathError, match="symlink"):
        private_dir(link)
    assert _mode(real) == 0o755 and list(real.iterdir()) == []


def test_a_private_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, -1)
    with pytest.raises(UnsafePathError, match=f"uid {NOBODY}"):
        private_dir(theirs)
    assert _mode(theirs) == 0o755


def test_a_usable_dir_keeps_a_shared_dir_as_it_is_but_refuses_a_symlink(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    usable_dir(shared)
    assert _mode(shared) == 0o777 and os.lstat(shared).st_mode & stat.S_ISVTX
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(UnsafePathError, match="symlink"):
        usable_dir(link)
    made = usable_dir(tmp_path / "new" / "dir")
    assert _mode(made) == 0o700


@pytest.mark.parametrize("mode", ["a", "w", "r+"])
def test_a_new_private_file_is_0600(tmp_path: Path, mode: str) -> None:
    old = os.umask(0)
    try:
        with open_private(tmp_path / "f.log", mode) as handle:
            handle.write("hello\n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f.log") == 0o600
    assert (tmp_path / "f.log").read_text() == "hello\n"


def test_an_existing_file_with_loose_bits_is_tightened_and_kept_or_truncated_by_mode(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_text("old\n")
    path.chmod(0o644)
    with open_private(path, "a") as handle:
        handle.write("new\n")
    assert _mode(path) == 0o600 and path.read_text() == "old\nnew\n"
    with open_private(path, "w") as handle:
        handle.write("only\n")
    assert path.read_text() == "only\n"
    with open_private(path, "r+") as handle:
        assert handle.read() == "only\n"


@pytest.mark.parametrize("mode", ["a", "w", "r+", "r"])
def test_a_symlink_at_the_path_is_refused_and_its_target_untouched(tmp_path: Path, mode: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "daemon.log"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        open_private(link, mode)
    assert victim.read_text() == "precious\n" and _mode(victim) == 0o644
    dangling = tmp_path / "dangling.lock"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(UnsafePathError, match="symlink"):
        open_private(dangling, mode)
    assert not (tmp_path / "would-be-created").exists()


def test_a_file_owned_by_another_user_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    theirs = tmp_path / "daemon.lock"
    theirs.write_text("theirs\n")
    theirs.chmod(0o644)
    os.chown(theirs, NOBODY, -1)
    with pytest.raises(UnsafePathError, match=f"uid {NOBODY}"):
        open_private(theirs, "w")
    assert theirs.read_text() == "theirs\n" and _mode(theirs) == 0o644


def test_a_hard_link_to_another_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "daemon.log")
    with pytest.raises(UnsafePathError, match="hard links"):
        open_private(tmp_path / "daemon.log", "w")
    assert victim.read_text() == "precious\n"


def test_a_fifo_or_a_directory_at_the_path_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for mode in ("a", "r+", "r"):
        with pytest.raises(UnsafePathError, match="not a regular file"):
            open_private_fd(tmp_path / "fifo", mode)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        open_private(tmp_path / "dir", "a")


def test_an_unknown_mode_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        open_private(tmp_path / "x", "x")


def test_write_atomic_replaces_the_file_with_a_0600_one(tmp_path: Path) -> None:
    path = tmp_path / "intent.json"
    path.write_text("old")
    path.chmod(0o644)
    write_atomic(path, '{"new": true}')
    assert path.read_text() == '{"new": true}' and _mode(path) == 0o600
    write_atomic(path, b"bytes", durable=False)
    assert path.read_bytes() == b"bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["intent.json"]  # no temporary file left


def test_write_atomic_replaces_a_symlink_itself_never_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "intent.json"
    link.symlink_to(victim)
    write_atomic(link, "mine")
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink() and link.read_text() == "mine" and _mode(link) == 0o600


def test_write_atomic_leaves_no_temporary_file_when_it_fails(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):
        write_atomic(tmp_path / "target", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


def test_a_socket_of_another_user_or_not_a_socket_is_a_problem_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "daemon.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert socket_problem(path, os.lstat(path)) is None
        os.chown(path, NOBODY, -1)
        problem = socket_problem(path, os.lstat(path))
    assert problem is not None and f"uid {NOBODY}" in problem and "another user's daemon" in problem
    plain = tmp_path / "plain"
    plain.write_text("")
    assert "not a socket" in str(socket_problem(plain, os.lstat(plain)))
    link = tmp_path / "link.sock"
    link.symlink_to(plain)
    assert "symlink" in str(socket_problem(link, os.lstat(link)))
