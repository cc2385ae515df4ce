"""A login lock file held as another process would hold it, for the lock-wait tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def held_elsewhere(stems: list[str]) -> Iterator[Callable[[], None]]:
    """Hold the login lock files of ``stems`` as another process would (another open
    file: its ``flock`` conflicts with the backend's); the callable lets them go."""
    fds = [os.open(f"{stem}.login.lock", os.O_RDWR | os.O_CREAT, 0o600) for stem in stems]
    for fd in fds:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def let_go() -> None:
        while fds:
            os.close(fds.pop())  # closing the only open of it lets its flock go

    try:
        yield let_go
    finally:
        let_go()
