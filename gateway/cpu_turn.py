"""One request computes at a time in a worker process; the others wait their turn.

A worker runs several handler threads, but only one of them can run Python at a time
(the GIL) and the bank runs one worker per core. What threads buy is overlap with waiting
(a ledger commit), not parallel computing. Yet ``cryptography`` releases the
GIL inside each ECDH, verification or RSA operation (tens of microseconds), and with other
handlers waiting for the GIL every such release hands it over: two context switches per
operation, several operations per authorization. Measured here (in one process, 8
threads, the ceiling's crypto on real AuthReqs): 874 us of CPU per authorization with the
threads free, 588 us with this turn held around each request, 569 us single-threaded.

So a handler holds the turn while it computes (``gateway.server`` takes it around each
RPC) and steps ``aside`` while it waits for something that does not need this process's
CPU, such as the ledger's commit (``gateway.ledger.group_commit``). Threads waiting for the
turn sleep on a lock, not on the GIL, so a crypto call's GIL release finds nobody to hand
it to. The ledger's writer thread takes the turn while it applies a group and gives it
back before the commit's fsync, except while a write below (``unwaited``) waits on it:
then it applies without the turn if it is taken, and a wait for it already under way ends
(``held_unless``). A PostgreSQL ledger operation runs aside as a whole (its time is
network round trips).

Rule for the code that runs under the turn: never block on a lock whose holder may itself
wait for the turn; wait for such a lock with ``holding`` (the certificate authority's
store and its revocation watcher are the two, since a merchant's registration opens its
ledger account inside the CA's write transaction).

A thread that holds something other processes wait for must not wait for the turn
either: ca.db's write lock, which ``setpay ca revoke`` and the other workers need. Inside
``unwaited`` (the CA store's write transactions) a wait still gives the turn up, but its
end takes the turn back only if it is free; if not, the thread goes on without it (the
GIL still serializes Python: only the crypto's hand-overs cost more) and waits for it
once the block has ended, its lock let go. Keeping the turn through the wait instead
would deadlock with a ledger in the process: its writer applies the group the waiting
thread submitted under the turn.

``wanting`` counts the threads that hold the turn or wait for it, that is the requests
computing now or about to: the ledger writer waits a moment for their work before it
commits (``gateway.ledger.group_commit``).

The turn is re-entrant per thread (a nested RPC helper taking it again is harmless), and
``aside`` in a thread that does not hold it does nothing: code that runs outside a
request (the CLI, tests, background jobs) is unaffected.

A request waits for the turn for a bounded time (``held(within=...)``, raising
``TurnNotFree``): a holder that does not give it back (a token call that does not
return) must not hold every other request of the worker with it. ``gateway.server``
derives the bound from the call's deadline. Taking a free turn costs the same with a
bound as without: the lock is tried without blocking first, and only a taken one is
waited for with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hsm.observer import wait_aside_with


class TurnNotFree(Exception):
    """The turn stayed taken for the whole of a bounded wait (``CpuTurn.held(within=...)``)."""


class _Mine(threading.local):
    """One thread's standing with the turn; class defaults, so that reading a thread's
    own before it set any raises nothing (every RPC reads them)."""

    depth = 0  # levels of the turn held
    owed = 0  # levels held on paper only (``CpuTurn._owed``)
    unwaited = False  # inside ``CpuTurn.unwaited``


class CpuTurn:
    """A process-wide, re-entrant turn to compute."""

    def __init__(self) -> None:
        """A free turn."""
        self._lock = threading.RLock()
        self._mine = _Mine()
        self._count_lock = threading.Lock()
        self._wanting = 0
        self._sink: Callable[[int], None] | None = None

    @property
    def wanting(self) -> int:
        """Threads that hold the turn or wait for it: requests computing now or about to."""
        return self._wanting

    def publish(self, sink: Callable[[int], None] | None) -> None:
        """Report every change of ``wanting`` to ``sink`` (``gateway.demand``: the ledger
        process reads the workers' counts to know when to wait for more work)."""
        self._sink = sink

    def _want(self, delta: int) -> None:
        with self._count_lock:
            self._wanting += delta
            if self._sink is not None:
                self._sink(self._wanting)

    def _depth(self) -> int:
        return self._mine.depth

    def _owed(self) -> int:
        """Levels of the turn this thread holds on paper only: an ``aside`` inside
        ``unwaited`` found it taken, and the block's end takes them back."""
        return self._mine.owed

    @property
    def unwaiting(self) -> bool:
        """Whether this thread is inside ``unwaited``: what it waits on is to be done
        without waiting for the turn (``gateway.ledger.group_commit``'s writer)."""
        return self._mine.unwaited

    @contextmanager
    def unwaited(self) -> Iterator[None]:
        """For the block, this thread never waits to take the turn back (the module
        docstring says why): an ``aside`` that ends takes it back only if free, else the
        thread goes on without it, a later ``aside``'s end taking it if free by then and
        the block's end waiting for it. While it goes on without it, a ``held`` it enters
        does not wait either (held on paper, as the levels below). Re-entrant. A thread
        that holds no turn as the block begins has nothing to take back: a ``held`` it
        enters waits as anywhere, and only an ``aside`` inside that ``held`` goes on
        without it."""
        outermost = not self._mine.unwaited
        self._mine.unwaited = True
        try:
            yield
        finally:
            if outermost:
                self._mine.unwaited = False
                owed = self._owed()
                if owed:
                    for _ in range(owed):
                        self._lock.acquire()
                    self._mine.owed = 0
                    self._mine.depth = owed

    @contextmanager
    def held(self, within: float | None = None) -> Iterator[None]:
        """Hold the turn for the block, waiting for it if another thread has it: for ever,
        or at most ``within`` seconds, then raising ``TurnNotFree``."""
        if self._owed():
            # Inside ``unwaited``, going on without the turn: taken on paper, as the
            # levels below are, and for real with them at the block's end.
            self._mine.owed += 1
            try:
                yield
            finally:
                if self._owed():
                    self._mine.owed -= 1
                else:  # a later wait's end took the levels for real
                    self._mine.depth -= 1
                    self._lock.release()
            return
        outermost = self._depth() == 0
        if outermost:
            self._want(1)
        try:
            # acquire(timeout=...) tries without blocking first, as acquire() does: a free
            # turn costs no more with a bound than without.
            timeout = -1.0 if within is None else min(max(within, 0.0), threading.TIMEOUT_MAX)
            if not self._lock.acquire(timeout=timeout):
                raise TurnNotFree(f"the turn to compute stayed taken for {within:.3f} s")
            self._mine.depth = self._depth() + 1
            try:
                yield
            finally:
                if self._owed():
                    # An ``aside`` in the block, inside an ``unwaited`` begun before it,
                    # found the turn taken: this level is held on paper only.
                    self._mine.owed -= 1
                else:
                    self._mine.depth -= 1
                    self._lock.release()
        finally:
            if outermost:
                self._want(-1)

    @contextmanager
    def held_unless(self, given_up: Callable[[], bool], every: float) -> Iterator[None]:
        """Hold the turn for the block as ``held`` does, unless ``given_up()`` is true while
        the turn is taken: then the block runs without it, and is no demand. Asked before
        the wait and then every ``every`` seconds of it: another thread cannot wake a wait
        on the turn's lock without a cost on every release of the turn, which every
        request pays. (The ledger's writer: a CA write holding ca.db waits on it.)"""
        if self._depth() or self._owed():  # held already, or on paper: nothing to wait for
            with self.held():
                yield
            return
        self._want(1)
        try:
            taken = self._lock.acquire(blocking=False)
            while not taken and not given_up():
                taken = self._lock.acquire(timeout=every)
        except BaseException:
            self._want(-1)
            raise
        if not taken:
            self._want(-1)
            yield
            return
        self._mine.depth = 1
        try:
            yield
        finally:
            if self._owed():  # as in ``held``
                self._mine.owed -= 1
            else:
                self._mine.depth -= 1
                self._lock.release()
            self._want(-1)

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Give the turn up for the block (a wait), take it back after; no-op if not held.
        Inside ``unwaited``, taken back after only if free (else at that block's end)."""
        depth = self._depth()
        if depth == 0:
            owed = self._owed()
            if not owed:
                yield
                return
            # On paper: the wait is no demand, and its end takes the turn if free.
            self._want(-1)
            self._mine.owed = 0
            try:
                yield
            finally:
                self._want(1)
                if self._lock.acquire(blocking=False):
                    for _ in range(owed - 1):
                        self._lock.acquire()
                    self._mine.depth = owed
                else:
                    self._mine.owed = owed
            return
        self._want(-1)
        for _ in range(depth):
            self._lock.release()
        self._mine.depth = 0
        try:
            yield
        finally:
            self._want(1)
            if self._mine.unwaited and not self._lock.acquire(blocking=False):
                self._mine.owed = depth
            else:
                taken = 1 if self._mine.unwaited else 0
                for _ in range(depth - taken):
                    self._lock.acquire()
                self._mine.depth = depth


@contextmanager
def holding(lock: threading.Lock | threading.RLock, turn: CpuTurn | None = None) -> Iterator[None]:
    """Hold ``lock`` for the block; if it is taken, wait for it without the turn.

    A thread that holds such a lock may itself wait for the turn (it called into the
    ledger, which steps aside while its commit is on disk). Waiting for that lock while
    holding the turn would make the two wait for each other; so a taken lock is waited
    for aside, and the turn is taken back once the lock is ours.
    """
    if not lock.acquire(blocking=False):
        with (turn or PROCESS_TURN).aside():
            lock.acquire()
    try:
        yield
    finally:
        lock.release()


#: The worker process's turn. One per process: it models the process's single core of
#: Python, so every server and the ledger writer of the process share it.
PROCESS_TURN = CpuTurn()
# The key backends' waits (a token session, the PKCS#11 module lock, a token's lock file)
# are taken aside from it, as the rule above asks of every wait for a lock held elsewhere:
# a handler waiting seconds for a token a health probe holds froze every other call.
wait_aside_with(PROCESS_TURN.aside)
