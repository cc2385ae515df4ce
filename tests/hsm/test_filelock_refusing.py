"""``hsm.filelock``'s refused waits: a lock held elsewhere raises ``LockTaken`` at once
inside ``refusing_waits`` (for a caller that must let go of what it holds before it
waits: ``TokenLink`` and the PKCS#11 module lock), and ``wait_until_free`` waits aside
for it without taking it, within one deadline.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cpu_turn import CpuTurn
from hsm.errors import TransientBackendError
from hsm.filelock import LockTaken, exclusive_lock, refusing_waits, wait_until_free

from .login_lock_support import entries_counted, held_elsewhere


@pytest.fixture
def entries() -> Iterator[list[str]]:
    """Every entry into the wait hook (a turn's ``aside`` still runs)."""
    with entries_counted(CpuTurn()) as seen:
        yield seen


def test_a_lock_held_elsewhere_is_refused_at_once_inside_refusing_waits(
    tmp_path: Path, entries: list[str]
) -> None:
    path = str(tmp_path / "token.login.lock")
    with held_elsewhere([path.removesuffix(".login.lock")]), refusing_waits():
        started = time.monotonic()
        with pytest.raises(LockTaken) as caught, exclusive_lock(path, 5.0):
            pass
    assert caught.value.path == path
    assert time.monotonic() - started < 1.0
    assert entries == []  # nothing waited for, aside or not


def test_a_free_lock_is_taken_inside_refusing_waits(tmp_path: Path) -> None:
    path = str(tmp_path / "token.login.lock")
    with refusing_waits(), exclusive_lock(path, 5.0):
        probe = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    with exclusive_lock(path, 0.5):  # waits again outside, and was let go
        pass


def test_refusing_waits_is_this_thread_s_only(tmp_path: Path) -> None:
    path = str(tmp_path / "token.login.lock")
    seen: list[str] = []

    def elsewhere() -> None:
        try:
            with exclusive_lock(path, 0.2):
                seen.append("taken")
        except TransientBackendError:
            seen.append("waited")
        except LockTaken:
            seen.append("refused")

    with held_elsewhere([path.removesuffix(".login.lock")]), refusing_waits():
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert seen == ["waited"]


def test_wait_until_free_takes_nothing(tmp_path: Path, entries: list[str]) -> None:
    path = str(tmp_path / "token.login.lock")
    with held_elsewhere([path.removesuffix(".login.lock")]) as let_go:
        threading.Timer(0.2, let_go).start()
        wait_until_free(path, time.monotonic() + 5.0, 5.0)
    assert entries == ["aside"]
    with exclusive_lock(path, 0.1):  # free: the wait let it go
        pass


def test_wait_until_free_past_its_deadline_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "token.login.lock")
    with pytest.raises(TransientBackendError, match="still held by another process after 30000 ms"):
        wait_until_free(path, time.monotonic() - 0.01, 30.0)  # free, but the wait is over
    with (
        held_elsewhere([path.removesuffix(".login.lock")]),
        pytest.raises(TransientBackendError, match="after 200 ms"),
    ):
        wait_until_free(path, time.monotonic() + 0.2, 0.2)
