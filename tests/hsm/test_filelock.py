"""The inter-process lock: bounded waits, and lock files nobody else can plant."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.filelock import exclusive_lock, lock_directory


def _hold(path: str, held: object, release: object) -> None:
    with exclusive_lock(path, 5):
        held.set()  # type: ignore[attr-defined]
        release.wait(30)  # type: ignore[attr-defined]


def test_lock_held_by_another_process_times_out_transiently(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(TransientBackendError, match=r"x\.lock still held .* after 50 ms"),
            exclusive_lock(path, 0.05),
        ):
            pass
    finally:
        release.set()
        holder.join(30)
    with exclusive_lock(path, 5):  # free again once the holder is done
        pass


def test_lock_file_is_created_private(tmp_path: Path) -> None:
    with exclusive_lock(str(tmp_path / "x.lock"), 1):
        assert stat.S_IMODE((tmp_path / "x.lock").stat().st_mode) == 0o600


def test_lock_file_that_cannot_be_created_is_permanent(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x.lock"
    with (
        pytest.raises(PermanentBackendError, match=r"cannot create lock file .*x\.lock"),
        exclusive_lock(str(missing), 1),
    ):
        pass


def test_lock_file_planted_as_a_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    (tmp_path / "x.lock").symlink_to(target)
    with (
        pytest.raises(PermanentBackendError, match="cannot create lock file"),
        exclusive_lock(str(tmp_path / "x.lock"), 1),
    ):
        pass
    assert target.read_text() == "precious\n"


def test_lock_directory_is_made_private_when_missing(tmp_path: Path) -> None:
    made = lock_directory(str(tmp_path / "run"))
    assert made == str(tmp_path / "run")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert lock_directory(made) == made  # and accepted as it is


def test_lock_directory_that_cannot_be_made_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentBackendError, match="cannot create lock directory"):
        lock_directory(str(tmp_path / "no-such-parent" / "run"))
