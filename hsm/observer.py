"""The hook through which metrics watch a key backend, without ``hsm`` importing them.

A backend accepts an optional ``Observer`` and calls it after every ``sign`` and
``decapsulate`` (and, for a token, after every login and re-login), with:

    op          "sign", "decapsulate", "login" or "relogin"
    algorithm   the signature or KEM algorithm value ("" for logins)
    seconds     wall time of the whole call, waits included
    error_kind  None on success, else the class name of the ``KeyBackendError`` raised

Every argument comes from a small fixed set, so they are safe as metric labels. The
observer runs on the caller's thread and must not raise: whatever it raises goes to the
caller of the key operation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hsm.errors import KeyBackendError

Observer = Callable[[str, str, float, str | None], None]


@contextmanager
def observed(observer: Observer | None, op: str, algorithm: str) -> Iterator[None]:
    """Time the block and report it to ``observer`` (if any), with its error kind."""
    if observer is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    except KeyBackendError as exc:
        observer(op, algorithm, time.perf_counter() - started, type(exc).__name__)
        raise
    observer(op, algorithm, time.perf_counter() - started, None)
