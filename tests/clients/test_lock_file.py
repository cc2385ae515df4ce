"""``clients.lock_file``: the one way the clients open their lock files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from clients.lock_file import NotPlainFile, open_lock_file, why_unusable


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_made_then_found_read_only_and_private(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    fd, created = open_lock_file(path, 0o600)
    try:
        assert created
        assert os.get_blocking(fd) is False  # a FIFO would not have been waited on
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.write(fd, b"x")  # read-only: a flock needs no more
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fd, created = open_lock_file(path, 0o600)
    os.close(fd)
    assert not created


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
