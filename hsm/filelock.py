"""An exclusive lock between processes on one machine, with a bounded wait.

Used where processes would otherwise trample shared files: key versions claimed in a
software keystore, and PKCS#11 initialization plus login (SoftHSM rewrites its token
file on each login; several processes logging in at once failed 30-47% of the time on
the development machine, and none did under this lock).

Lock files must be where only this user can create them: in a world-writable directory
such as the system temp directory, any local user could create or hold a lock file with
the predictable name first and stall every login. ``lock_directory`` gives such a place
(by default a per-user directory under the system temp directory, made 0700) and
refuses one that is a link, not a directory, someone else's, or open to group or others;
lock files are opened without following links. Errors raised are
``hsm.errors.TransientBackendError`` (the holder may finish) and
``PermanentBackendError`` (the lock file or its directory cannot be used at all).
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.observer import waiting

#: How often a waiter retries a held lock. 5 ms is well under one SoftHSM login
#: (~2 ms to ~20 ms), so a waiter rarely sleeps long after the holder has finished.
POLL_SECONDS = 0.005


@contextmanager
def exclusive_lock(path: str, timeout_seconds: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block.

    Raises ``TransientBackendError`` after ``timeout_seconds`` without the lock: a hung
    process must not hang every other one forever.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot create lock file {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
    try:
        deadline = time.monotonic() + timeout_seconds
        while not _try_flock(fd):
            # Held by another process (a login, a key generation): wait inside the
            # process's wait hook (hsm.observer.waiting), not holding a server's turn;
            # and not holding the lock either while that turn comes back (other
            # processes would wait for our turn), so let go of it there if it comes free
            # and take it for good once the turn is back.
            with waiting():
                while not _try_flock(fd):
                    if time.monotonic() >= deadline:
                        raise TransientBackendError(
                            f"lock {path} still held by another process after "
                            f"{int(timeout_seconds * 1000)} ms"
                        )
                    time.sleep(POLL_SECONDS)
                fcntl.flock(fd, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool:
    """Take the exclusive flock on ``fd`` if nobody holds it; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_directory(path: str | None) -> str:
    """``path`` (or the per-user default) checked as a directory only this user can use.

    The default, ``<temp dir>/setpay-locks-<uid>``, is created 0700 when missing; so is a
    missing ``path`` (its parent must exist). ``PermanentBackendError`` says what is wrong.
    """
    uid = os.geteuid()
    directory = path or os.path.join(tempfile.gettempdir(), f"setpay-locks-{uid}")
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
