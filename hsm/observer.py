"""The hooks through which the process hosting a key backend watches it and lends it its
waits, without ``hsm`` importing that process's code.

A backend accepts an optional ``Observer`` and calls it after every ``sign`` and
``decapsulate`` (and, for a token, after every login and re-login), with:

    op          "sign", "decapsulate", "login" or "relogin"
    algorithm   the signature or KEM algorithm value ("" for logins)
    seconds     wall time of the whole call, waits included
    error_kind  None on success, else the class name of the ``KeyBackendError`` raised

Every argument comes from a small fixed set, so they are safe as metric labels. The
observer runs on the caller's thread and must not raise: whatever it raises goes to the
caller of the key operation.

``wait_aside_with`` installs, once per process, how a backend's thread waits for what
another thread holds: a token session, the PKCS#11 module lock, the token's login or key
lock file. A server whose handler threads take turns to compute (the gateway's
``gateway.cpu_turn``) installs its turn's ``aside``, so that a thread waiting seconds for
a stalled token gives up the turn meanwhile instead of freezing the process's other
calls, as every wait for a lock held elsewhere must (that module's rule). Only a wait is
taken aside: a free lock or session is taken at once, turn and all. Nor is what was
waited for taken aside: the backend takes it once the hook has given back what it took,
so that it is never held through that (a queue for the turn) from threads that hold no
turn. Without a hook a wait is a plain wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from hsm.errors import KeyBackendError

Observer = Callable[[str, str, float, str | None], None]

#: Makes the context a wait runs in (see the module docstring); ``nullcontext`` by default.
WaitAside = Callable[[], AbstractContextManager[None]]

_wait_aside: WaitAside = nullcontext


def wait_aside_with(aside: WaitAside | None) -> WaitAside:
    """Run every later wait of this process's key backends inside ``aside()`` (None: as
    plain waits); return the hook it replaces. ``aside`` must give back on exit whatever
    it gave up on entry."""
    global _wait_aside  # one per process, like the turn it lends
    before, _wait_aside = _wait_aside, aside or nullcontext
    return before


def waiting() -> AbstractContextManager[None]:
    """The context to wait in for something another thread holds (installed hook's)."""
    return _wait_aside()


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
