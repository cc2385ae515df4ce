"""A bounded pool of token sessions: one thread per session, bounded wait, eviction.

The pool only counts and hands out; it never talks to the token. A lease may come with
no session (the pool had none idle) or with a stale one: the borrower, holding the
module lock, validates it (same library generation, same process) and opens a fresh
session when needed, then marks it evicted if the token reported a session or device
error, so it is not handed out again. Once the pool is closed it takes no session back:
the idle ones are handed to the closer, and each one out on a lease goes to ``discard``
when its lease ends, so none outlives the close unnoticed. Errors raised are
``TransientBackendError``. ``stats`` is a read-only snapshot for metrics (leases granted
and the time spent waiting). A borrower that must wait for a slot waits inside the
process's wait hook (``hsm.observer.waiting``): a server's turn to compute is not held
through it, and no slot is held while that turn comes back (see ``_acquire``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from hsm.errors import TransientBackendError
from hsm.observer import waiting

T = TypeVar("T")


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool: its size, leases out now, and totals since it was made."""

    size: int
    in_use: int
    leases: int
    """Leases granted so far."""
    wait_seconds: float
    """Time those leases spent waiting for a free slot, summed."""


class Lease(Generic[T]):
    """One borrowing of a pool slot; ``item`` may be None or stale until validated."""

    def __init__(self, item: T | None) -> None:
        self.item = item
        self.evicted = False

    def evict(self) -> None:
        """Do not return this lease's session to the pool."""
        self.evicted = True


class SessionPool(Generic[T]):
    """At most ``size`` leases at a time; a borrower waits at most ``wait_seconds``.

    ``discard`` receives each session given back after ``close`` (on the returning thread,
    holding no pool lock).
    """

    def __init__(
        self, size: int, wait_seconds: float, discard: Callable[[T], None] | None = None
    ) -> None:
        if size < 1 or wait_seconds <= 0:
            raise ValueError("pool size must be >= 1 and wait > 0")
        self.size = size
        self.wait_seconds = wait_seconds
        self._discard = discard
        self._condition = threading.Condition()
        self._idle: list[T] = []
        self._closed = False
        self._leased = 0
        self._granted = 0
        self._waited = 0.0

    @contextmanager
    def lease(self) -> Iterator[Lease[T]]:
        """Borrow a slot (and an idle session if any) for the block."""
        lease: Lease[T] = Lease(self._acquire())
        try:
            yield lease
        finally:
            refused: T | None = None
            with self._condition:
                self._leased -= 1
                if lease.item is not None and not lease.evicted:
                    if self._closed:
                        refused = lease.item
                    else:
                        self._idle.append(lease.item)
                self._condition.notify()
            if refused is not None and self._discard is not None:
                self._discard(refused)

    def drain(self) -> list[T]:
        """Take every idle session out of the pool (for closing or discarding)."""
        with self._condition:
            idle, self._idle = self._idle, []
            return idle

    def close(self) -> list[T]:
        """Take no session back from now on; the idle ones, for the caller to close.

        Checked under the same lock as every return, so a session on a lease now is
        either among those returned here or goes to ``discard`` when its lease ends.
        """
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            return idle

    @property
    def in_use(self) -> int:
        """Leases currently out."""
        with self._condition:
            return self._leased

    @property
    def stats(self) -> PoolStats:
        """Size, leases out now, leases granted and their summed wait (read-only)."""
        with self._condition:
            return PoolStats(self.size, self._leased, self._granted, self._waited)

    def after_fork_in_child(self) -> None:
        """Forget the parent's sessions and waiters: none of them exist in this process."""
        self._condition = threading.Condition()
        self._idle = []
        self._leased = 0
        self._granted = 0
        self._waited = 0.0

    def _acquire(self) -> T | None:
        started = time.monotonic()
        deadline = started + self.wait_seconds
        while True:
            with self._condition:
                if self._leased < self.size:
                    return self._grant(started)
            # Every slot is out: wait without what the hook gives up (the caller's turn
            # to compute) until one is free, but take none there: a slot taken aside
            # would be held while the turn comes back, out of reach of a borrower that
            # holds no turn. Taken above once the turn is back, if still free.
            with waiting(), self._condition:
                while self._leased >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TransientBackendError(
                            f"session pool exhausted after {int(self.wait_seconds * 1000)} "
                            f"ms ({self.size} sessions in use)"
                        )
                    self._condition.wait(remaining)

    def _grant(self, started: float) -> T | None:
        """Count a lease granted (the condition's lock held); an idle session, if any."""
        self._leased += 1
        self._granted += 1
        self._waited += time.monotonic() - started
        return self._idle.pop() if self._idle else None
