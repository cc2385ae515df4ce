"""``clients.lock_file``: the one way the clients open their lock files."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest

from clients.lock_file import NotPlainFile, open_lock_file, why_unusable
from tests.clients.other_user import answer_as_another_user


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _access(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def test_made_then_found_read_write_and_private(tmp_path: Path) -> None:
    """Read-write: on NFS and CIFS an exclusive flock is an fcntl lock, which needs a
    descriptor open for writing."""
    path = tmp_path / "x.lock"
    fd, created = open_lock_file(path, 0o600)
    try:
        assert created
        assert os.get_blocking(fd) is False  # a FIFO would not have been waited on
        assert _access(fd) == os.O_RDWR
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fd, created = open_lock_file(path, 0o600)
    try:
        assert _access(fd) == os.O_RDWR
    finally:
        os.close(fd)
    assert not created


def _access_as_another_user(directory: Path, name: str) -> str:
    """The access mode ``open_lock_file`` gets for ``directory / name``, or its refusal,
    opened by a user the file is not writable by: ``nobody`` in a child process when the
    test runs as root (entering the directory first), this user otherwise."""

    def opened() -> str:
        try:
            fd, _ = open_lock_file(Path(name), 0o600)
        except OSError as exc:
            return f"refused: {exc.strerror}"
        try:
            return {os.O_RDWR: "read-write", os.O_RDONLY: "read-only"}[_access(fd)]
        finally:
            os.close(fd)

    return answer_as_another_user(directory, opened)


def test_a_lock_file_the_user_may_only_read_is_opened_read_only(tmp_path: Path) -> None:
    """Root's file others may read (as root: opened as ``nobody``), or the user's own
    read-only file: the read-write open is refused (EACCES), the read-only one taken."""
    directory = tmp_path / "d"
    directory.mkdir(mode=0o755)
    path = directory / "x.lock"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    path.chmod(0o644 if os.geteuid() == 0 else 0o400)
    assert _access_as_another_user(directory, "x.lock") == "read-only"
    path.chmod(0o600 if os.geteuid() == 0 else 0o000)
    assert _access_as_another_user(directory, "x.lock") == "refused: Permission denied"


class _Opens:
    """``os.open`` as ``clients.lock_file`` calls it, each call's access mode noted, and a
    read-write one failing with ``errno``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
        self.access: list[int] = []
        self._code = code
        self._open = os.open
        monkeypatch.setattr(os, "open", self)  # as ``clients.lock_file`` calls it

    def __call__(
        self, path: Path, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
    ) -> int:
        self.access.append(flags & os.O_ACCMODE)
        if flags & os.O_ACCMODE == os.O_RDWR:
            raise OSError(self._code, os.strerror(self._code), str(path))
        return self._open(path, flags, mode, dir_fd=dir_fd)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_read_write_is_tried_first_then_read_only_where_writing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    opens = _Opens(monkeypatch, code)
    fd, created = open_lock_file(tmp_path / "x.lock", 0o600)
    os.close(fd)
    assert created
    assert opens.access == [os.O_RDWR, os.O_RDONLY]


@pytest.mark.parametrize("code", [errno.EPERM, errno.ETXTBSY], ids=["EPERM", "ETXTBSY"])
def test_a_lock_file_found_immutable_or_append_only_is_opened_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A read-write open of a file made immutable or append-only (``chattr +i``, ``+a``)
    fails with EPERM, of one some process runs with ETXTBSY: before, that was refused,
    though such a file locked when every lock file was opened read-only."""
    path = tmp_path / "x.lock"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    opens = _Opens(monkeypatch, code)
    fd, created = open_lock_file(path, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert not created
    # Read-only: made if missing (``O_EXCL``, refused: it is there), then opened as found.
    assert opens.access == [os.O_RDWR, os.O_RDONLY, os.O_RDONLY]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EISDIR, errno.ELOOP])
def test_no_read_only_open_for_any_other_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    opens = _Opens(monkeypatch, code)
    with pytest.raises(OSError) as caught:
        open_lock_file(tmp_path / "x.lock", 0o600)
    assert caught.value.errno == code
    assert opens.access == [os.O_RDWR]


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "x.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError) as caught:
        open_lock_file(tmp_path / "x.lock", 0o600)
    assert caught.value.errno == errno.ELOOP
    assert why_unusable(caught.value) == "it is a symbolic link"
    assert not (tmp_path / "elsewhere").exists()


def test_a_fifo_is_refused_and_its_descriptor_closed(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.lock")
    before = _open_descriptors()
    with pytest.raises(NotPlainFile) as caught:
        open_lock_file(tmp_path / "x.lock", 0o600)
    assert why_unusable(caught.value) == "it is not a plain file"
    assert _open_descriptors() == before


@pytest.mark.parametrize("refused", [None, errno.EACCES], ids=["read-write", "read-only"])
def test_with_a_directory_s_descriptor_it_is_opened_in_that_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: int | None
) -> None:
    """``dir_fd``: made, then found, in the directory opened, whichever directory its
    path names by then; read-only too, where a read-write open is refused."""
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    directory = os.open(first, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first.rename(tmp_path / "moved")
        other.rename(first)  # the path now names another directory
        if refused is not None:
            _Opens(monkeypatch, refused)
        made = open_lock_file(Path("x.lock"), 0o600, dir_fd=directory)
        os.close(made[0])
        found = open_lock_file(Path("x.lock"), 0o600, dir_fd=directory)
        os.close(found[0])
    finally:
        os.close(directory)
    assert made[1] and not found[1]
    assert (tmp_path / "moved" / "x.lock").is_file()
    assert not (first / "x.lock").exists()
