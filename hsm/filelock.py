"""An exclusive lock between processes on one machine, with a bounded wait.

Used where processes would otherwise trample shared files: key versions claimed in a
software keystore, and PKCS#11 initialization plus login (SoftHSM rewrites its token
file on each login; several processes logging in at once failed 30-47% of the time on
the development machine, and none did under this lock).

Lock files must be where only this user can create them: in a world-writable directory
such as the system temp directory, any local user could create or hold a lock file with
the predictable name first and stall every login. ``lock_directory`` gives such a place
(by default a per-user directory in ``DEFAULT_LOCK_PARENT``, made 0700) and refuses
one that is a link, not a directory, someone else's, or open to group or others; lock
files are opened without following links. Errors raised are
``hsm.errors.TransientBackendError`` (the holder may finish) and
``PermanentBackendError`` (the lock file or its directory cannot be used at all).

A lock held elsewhere is waited for inside the process's wait hook
(``hsm.observer.waiting``), so that a server's turn to compute is not held through it.
A thread that holds something the process's other threads need, which must not stay
held through a queue for that turn (``TokenLink`` holding the PKCS#11 module lock), asks
instead not to wait at all (``refusing_waits``): such a lock raises ``LockTaken``, and
the caller lets go of what it holds, waits with ``wait_until_free`` and tries again.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.observer import waiting

#: How often a waiter retries a held lock. 5 ms is well under one SoftHSM login
#: (~2 ms to ~20 ms), so a waiter rarely sleeps long after the holder has finished.
POLL_SECONDS = 0.005

#: Where the default lock directory is made: one fixed place per host, the same for every
#: process whatever its environment, not ``tempfile.gettempdir()``, which follows $TMPDIR
#: (a service and an operator's shell, libpam-tmpdir, sudo or su, often differ there):
#: processes of one token given different lock files can claim the same key version.
#: Every user may create in it (sticky, world-writable) on every Unix. A process in
#: another mount namespace (a container, systemd's PrivateTmp=) sees another one: such a
#: process and the others on its token need one ``x-lock-dir``.
DEFAULT_LOCK_PARENT = "/tmp"  # noqa: S108 - only this user's 0700 directory is used in it


class LockTaken(Exception):
    """A lock held elsewhere, met inside ``refusing_waits``: ``path`` is to be waited for
    (``wait_until_free``) once the caller holds nothing that others need. Not a
    ``KeyBackendError``: it never reaches a backend's caller, nor its observer."""

    def __init__(self, path: str) -> None:
        super().__init__(f"lock {path} is held by another process")
        self.path = path


class _Refusing(threading.local):
    """Whether this thread's lock waits are refused (``refusing_waits``)."""

    on = False


_refusing = _Refusing()


@contextmanager
def refusing_waits() -> Iterator[None]:
    """Inside, ``exclusive_lock`` raises ``LockTaken`` for a lock held elsewhere instead
    of waiting for it (this thread only; a free lock is taken as ever)."""
    before, _refusing.on = _refusing.on, True
    try:
        yield
    finally:
        _refusing.on = before


@contextmanager
def exclusive_lock(path: str, timeout_seconds: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block.

    Raises ``TransientBackendError`` after ``timeout_seconds`` without the lock: a hung
    process must not hang every other one forever. Inside ``refusing_waits``, raises
    ``LockTaken`` at once instead of waiting.
    """
    fd = _open(path)
    try:
        if not _try_flock(fd):
            if _refusing.on:
                raise LockTaken(path)
            deadline = time.monotonic() + timeout_seconds
            while True:
                # Held by another process (a login, a key generation): wait aside, and
                # take it only with the turn back (see _wait_free), if still free then.
                _wait_free(fd, path, deadline, timeout_seconds)
                if _try_flock(fd):
                    break
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def wait_until_free(path: str, deadline: float, timeout_seconds: float) -> None:
    """Return once the lock at ``path`` is free (not taking it), waiting aside if it is
    held; ``TransientBackendError`` if it is still held at ``deadline`` (time.monotonic()),
    ``timeout_seconds`` after the wait for it began, or once that is past (the caller,
    refused the lock again, was just kept out by another holder: one wait is bounded
    however often the lock changes hands)."""
    fd = _open(path)
    try:
        if time.monotonic() >= deadline:
            raise _still_held(path, timeout_seconds)
        if _try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            _wait_free(fd, path, deadline, timeout_seconds)
    finally:
        os.close(fd)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot create lock file {path}: {exc.strerror or type(exc).__name__}"
        ) from exc


def _wait_free(fd: int, path: str, deadline: float, timeout_seconds: float) -> None:
    """Wait inside the process's wait hook (hsm.observer.waiting), not holding a server's
    turn, until the lock is free; let go of it there: held while that turn comes back,
    it would keep other processes waiting for our turn."""
    with waiting():
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                raise _still_held(path, timeout_seconds)
            time.sleep(POLL_SECONDS)
        fcntl.flock(fd, fcntl.LOCK_UN)


def _still_held(path: str, timeout_seconds: float) -> TransientBackendError:
    return TransientBackendError(
        f"lock {path} still held by another process after {int(timeout_seconds * 1000)} ms"
    )


def _try_flock(fd: int) -> bool:
    """Take the exclusive flock on ``fd`` if nobody holds it; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_directory(path: str | None) -> str:
    """``path`` (or the per-user default) checked as a directory only this user can use.

    The default, ``<DEFAULT_LOCK_PARENT>/setpay-locks-<uid>``, is created 0700 when
    missing; so is a missing ``path`` (its parent must exist). ``PermanentBackendError``
    says what is wrong.
    """
    uid = os.geteuid()
    directory = path or os.path.join(DEFAULT_LOCK_PARENT, f"setpay-locks-{uid}")
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass  # checked below, whoever made it
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot create lock directory {directory}: {exc.strerror or type(exc).__name__}"
        ) from exc
    try:
        found = os.lstat(directory)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot use lock directory {directory}: {exc.strerror or type(exc).__name__}"
        ) from exc
    if stat.S_ISLNK(found.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(found.st_mode):
        problem = "is not a directory"
    elif found.st_uid != uid:
        problem = f"is owned by uid {found.st_uid}, not by this user (uid {uid})"
    elif found.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problem = f"is open to group or others (mode {stat.S_IMODE(found.st_mode):04o})"
    else:
        return directory
    raise PermanentBackendError(
        f"lock directory {directory} {problem}: it must be a directory of this user "
        "with mode 0700 (set x-lock-dir in the key URI to use another one)"
    )
