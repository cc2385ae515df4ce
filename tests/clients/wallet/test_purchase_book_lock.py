"""``purchases.json.lock``: only a plain file is locked, whatever was left in its place.

The wallet's directory may be shared, or restored from a backup holding anything under
the lock file's name. The lock file was opened following a link (creating or opening a
file elsewhere with the wallet's rights, and narrowing that file's mode to 0600) and
took whatever else opened there, a FIFO included. Each is now refused, naming the lock
file, the book left as it was; an ordinary lock file locks as before.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.wallet import purchase_book
from clients.wallet.purchases import PurchaseBook
from tests.clients.other_user import answer_as_another_user
from tests.clients.wallet.test_purchase_book import RECORD

BOOK = "purchases.json"
LOCK = "purchases.json.lock"
ANSWERED = replace(RECORD, completion="COMPLETION_CODE_AUTHORIZATION_PERFORMED")

# Each way a command writes the book, each under the lock.
WRITES: dict[str, Callable[[PurchaseBook], object]] = {
    "add": lambda book: book.add(RECORD),
    "save": lambda book: book.save(RECORD),
    "save_unless_changed": lambda book: book.save_unless_changed(RECORD, ANSWERED),
}


@pytest.fixture
def alarm() -> Iterator[None]:
    """A test that would hang fails instead, after 10 s."""

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("the purchase book's lock hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _refusal(directory: Path, write: str) -> str:
    """What ``write`` raised on the book in ``directory``, which it must not have written."""
    with pytest.raises(ConfigError) as caught:
        WRITES[write](PurchaseBook(directory / BOOK))
    assert not (directory / BOOK).exists()
    said = str(caught.value)
    assert f"cannot use lock file {directory / LOCK}: " in said
    assert said.endswith(f"nothing was written to {BOOK}")
    return said


@pytest.mark.parametrize("write", WRITES)
def test_a_link_to_a_file_elsewhere_is_refused_and_that_file_left_alone(
    tmp_path: Path, write: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("someone's own\n")
    elsewhere.chmod(0o644)
    (tmp_path / LOCK).symlink_to(elsewhere)
    assert "it is a symbolic link; remove it" in _refusal(tmp_path, write)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644  # not narrowed through the link
    assert elsewhere.read_text() == "someone's own\n"


def test_a_dangling_link_makes_no_file_where_it_points(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / LOCK).symlink_to(elsewhere)
    assert "it is a symbolic link" in _refusal(tmp_path, "add")
    assert not elsewhere.exists()


@pytest.mark.parametrize("write", WRITES)
def test_a_fifo_in_place_of_the_lock_file_is_refused_at_once(
    tmp_path: Path, alarm: None, write: str
) -> None:
    os.mkfifo(tmp_path / LOCK, 0o600)
    assert "it is not a plain file; remove it" in _refusal(tmp_path, write)
    assert stat.S_ISFIFO((tmp_path / LOCK).lstat().st_mode)  # left for its owner to remove


def test_a_directory_in_place_of_the_lock_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / LOCK).mkdir()
    _refusal(tmp_path, "save")


def test_an_ordinary_lock_file_is_made_private_and_taken_again(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / BOOK)
    book.add(RECORD)
    lock = tmp_path / LOCK
    found = lock.lstat()
    assert stat.S_ISREG(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o600
    assert found.st_size == 0
    # One found there (an older, wider one included) is taken and narrowed, not replaced.
    lock.chmod(0o644)
    assert book.save_unless_changed(RECORD, ANSWERED) == ANSWERED
    assert lock.stat().st_ino == found.st_ino
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert book.all() == [ANSWERED]


def test_a_write_still_waits_for_the_lock_s_holder(tmp_path: Path) -> None:
    """Opened not to wait on a FIFO, the lock file's descriptor still waits for a lock
    another command holds: the book is written only once that one lets go."""
    book = PurchaseBook(tmp_path / BOOK)
    book.save(RECORD)
    holder = os.open(tmp_path / LOCK, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    saving = threading.Thread(target=book.save, args=(ANSWERED,), daemon=True)
    try:
        saving.start()
        saving.join(timeout=0.5)
        assert saving.is_alive()  # waiting, not refused nor through
        assert book.all() == [RECORD]
    finally:
        os.close(holder)  # lets go
    saving.join(timeout=10)
    assert not saving.is_alive()
    assert book.all() == [ANSWERED]


def _failing_open(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The lock file's open fails with ``code``."""

    def fails(path: Path, mode: int, dir_fd: int | None = None) -> tuple[int, bool]:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(purchase_book, "open_lock_file", fails)


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_no_lock_file_to_remove_is_not_said_to_be_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """No file there (EACCES: a directory the user may not write), or a full or read-only
    file system: the path and the reason, no "remove it" of a file that is not there."""
    _failing_open(monkeypatch, code)
    said = _refusal(tmp_path, "add")
    assert f"{LOCK}: {os.strerror(code)}: nothing was written to {BOOK}" in said
    assert "remove it" not in said


def test_a_lock_file_there_that_cannot_be_opened_is_said_to_be_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / LOCK).touch()
    _failing_open(monkeypatch, errno.EACCES)
    said = _refusal(tmp_path, "add")
    assert f"{LOCK}: Permission denied; remove it, with no other wallet command running" in said


def test_a_directory_the_user_may_not_write_is_named_with_no_advice_to_remove(
    tmp_path: Path,
) -> None:
    """For real: ``nobody`` (the test run as root) or this user in a directory it may not
    write, with no lock file in it."""
    directory = tmp_path / "wallet"
    directory.mkdir(mode=0o555)
    try:
        said = answer_as_another_user(directory, lambda: _said(PurchaseBook(Path(BOOK))))
    finally:
        directory.chmod(0o755)
    assert said == (
        f"cannot use lock file {LOCK}: Permission denied: nothing was written to {BOOK}"
    )


def _said(book: PurchaseBook) -> str:
    try:
        book.add(RECORD)
    except ConfigError as exc:
        return str(exc)
    return "written"


def test_a_private_lock_file_that_refuses_a_mode_change_still_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An immutable or append-only lock file (``chattr +i``, ``+a``) locks, but refuses
    every fchmod, even to its own mode: one already private is not narrowed again; a
    wider one still cannot be used, and says so."""

    private, wider = tmp_path / "private", tmp_path / "wider"
    for directory, mode in ((private, 0o600), (wider, 0o644)):
        directory.mkdir()
        (directory / LOCK).touch()
        (directory / LOCK).chmod(mode)
    locks = {(directory / LOCK).stat().st_ino for directory in (private, wider)}
    fchmod = os.fchmod

    def refused_on_locks(fd: int, mode: int) -> None:
        if os.fstat(fd).st_ino in locks:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", refused_on_locks)
    PurchaseBook(private / BOOK).add(RECORD)
    assert (private / BOOK).exists()
    said = _refusal(wider, "add")
    assert "its mode cannot be narrowed (Operation not permitted): immutable or" in said
    assert "remove it" not in said  # which rm cannot do either
