"""The registration lock of a merchant's or wallet's directory, left by another user.

``registration.lock`` was opened for writing: one a run under ``sudo`` left behind (owned
by root) made every later ``register`` and ``renew`` of the directory's owner fail with
"Permission denied", and the error said "cannot create lock file" of a file that was
there. A ``flock`` needs a read-only descriptor only; a run as root hands the file it
makes to the directory's owner; one no run can open says whose it is and what to do.

Run as root, the tests that need two users run the directory owner's part in a child
process as ``nobody``; run as another user, those that need root are skipped.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError
from clients.registration_lock import LOCK_FILE, registering_alone
from tests.clients.other_user import NOBODY, answer_as_another_user

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="needs two users: run as root")
TOOK = "took the lock"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A wallet directory of its own user: ``nobody``'s when the test runs as root."""
    made = tmp_path / "wallet"
    made.mkdir(mode=0o700)
    if AS_ROOT:
        os.chown(made, NOBODY, NOBODY)
    return made


def _take(directory: Path) -> str:
    """``register``'s lock taken and let go in ``directory``; TOOK, or the refusal."""
    try:
        with registering_alone(directory, "wallet", "register"):
            return TOOK
    except RegistrationError as exc:
        return str(exc)


def _take_as_owner(directory: Path) -> str:
    """``_take`` by the directory's owner: in a child process as ``nobody`` (entering the
    directory before it drops root, so the test's directories above need not be open to
    it) when the test runs as root; in this process otherwise."""
    return answer_as_another_user(directory, lambda: _take(Path(".")))


def _lock_file_of_root(directory: Path, mode: int) -> Path:
    """The lock file as an earlier release's run under sudo left it: root's, ``mode``
    (or, run as another user, this user's own, at ``mode``)."""
    path = directory / LOCK_FILE
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, mode)
    return path


def test_a_lock_file_the_owner_may_only_read_is_taken(directory: Path) -> None:
    """Root's file others may read (as root), or the user's own read-only file: a flock
    needs no more."""
    _lock_file_of_root(directory, 0o644 if AS_ROOT else 0o400)
    assert _take_as_owner(directory) == TOOK


@needs_root
def test_a_run_as_root_leaves_the_lock_file_to_the_directory_s_owner(directory: Path) -> None:
    assert _take(directory) == TOOK
    made = (directory / LOCK_FILE).stat()
    assert (made.st_uid, made.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(made.st_mode) == 0o600  # still private to the owner
    assert _take_as_owner(directory) == TOOK


@needs_root
def test_root_gives_away_no_lock_file_it_did_not_make(directory: Path) -> None:
    """One found there may be a hard link to any empty file of root's whose other name
    the directory's owner removed after root's open: no check of it can tell, so it is
    locked and left root's; the owner's run then says whose it is."""
    path = _lock_file_of_root(directory, 0o600)
    assert _take(directory) == TOOK
    assert path.stat().st_uid == 0
    assert "belongs to uid 0" in _take_as_owner(directory)


@needs_root
@pytest.mark.parametrize("kind", ["a hard link", "not empty", "empty"])
def test_root_gives_away_no_file_found_in_place_of_the_lock_file(
    directory: Path, tmp_path: Path, kind: str
) -> None:
    """The directory's owner may have made ``registration.lock`` a hard link to a file of
    root's: a run under sudo locks it, and leaves it root's."""
    secret = tmp_path / "secret"
    secret.write_text("root's own\n" if kind == "not empty" else "")
    secret.chmod(0o600)
    if kind == "a hard link":
        os.link(secret, directory / LOCK_FILE)
    else:
        os.rename(secret, directory / LOCK_FILE)
    assert _take(directory) == TOOK
    found = (directory / LOCK_FILE).stat()
    assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (0, 0, 0o600)


@needs_root
def test_a_lock_file_the_owner_cannot_open_says_whose_it_is_and_what_to_do(
    directory: Path,
) -> None:
    path = _lock_file_of_root(directory, 0o600)
    said = _take_as_owner(directory)
    assert said.startswith("register: cannot use lock file registration.lock: ")
    assert "it belongs to uid 0" in said and "remove it and run register again" in said
    assert said.endswith("this register made, recorded and sent nothing")
    found = path.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (0, 0o600)  # left as it was


def test_a_lock_file_made_is_private_to_its_owner(directory: Path) -> None:
    assert _take(directory) == TOOK
    assert stat.S_IMODE((directory / LOCK_FILE).stat().st_mode) == 0o600


def test_a_second_register_is_refused_while_the_first_holds_the_lock(directory: Path) -> None:
    with registering_alone(directory, "wallet", "register"):
        said = _take(directory)
    assert "another `setpay wallet register` or `renew` is running" in said
    assert _take(directory) == TOOK  # let go with its block


@pytest.fixture
def alarm() -> Iterator[None]:
    """A test that would hang fails instead, after 10 s."""

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("registering_alone hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_in_place_of_the_lock_file_is_refused_at_once(directory: Path, alarm: None) -> None:
    """Opened read-only, a FIFO would wait for a writer: it is refused, not waited on."""
    os.mkfifo(directory / LOCK_FILE, 0o600)
    said = _take(directory)
    assert "registration.lock: it is not a plain file: remove it, run register again" in said
    assert said.endswith("this register made, recorded and sent nothing")


def test_a_symbolic_link_in_place_of_the_lock_file_is_refused(directory: Path) -> None:
    target = directory / "elsewhere"
    (directory / LOCK_FILE).symlink_to(target)
    said = _take(directory)
    assert "registration.lock: it is a symbolic link;" in said
    assert not target.exists()
