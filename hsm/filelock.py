"""An exclusive lock between processes on one machine, with a bounded wait.

Used where processes would otherwise trample shared files: key versions claimed in a
software keystore, and PKCS#11 initialization plus login (SoftHSM rewrites its token
file on each login; several processes logging in at once failed 30-47% of the time on
the development machine, and none did under this lock). Errors raised are
``hsm.errors.TransientBackendError`` (the holder may finish) and
``PermanentBackendError`` (the lock file cannot be created at all).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hsm.errors import PermanentBackendError, TransientBackendError

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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot create lock file {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise TransientBackendError(
                        f"lock {path} still held by another process after "
                        f"{int(timeout_seconds * 1000)} ms"
                    ) from exc
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
