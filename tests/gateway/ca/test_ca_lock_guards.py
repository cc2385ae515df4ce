"""The CA's locks whose holder may wait for the worker's turn are waited for aside from it.

``CaStore.close`` waits for the write's lock and the reads' lock, and the revocation
watcher's poll for its install lock, with ``gateway.cpu_turn.holding``: each may be held
by a thread that waits for the turn before it lets go (a write once its transaction has
ended, its turn taken meanwhile; an install waiting for the reads' lock aside). Waited
for with the turn held, the two would wait for each other for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CaStore, RevocationWatcher
from gateway.ca.errors import CaError
from gateway.cpu_turn import PROCESS_TURN

from .conftest import Bank
from .test_ca_store_waits import _session

# Each scenario ends in well under a second; a deadlock never does.
ENDS_WITHIN_S = 5.0


class Call(threading.Thread):
    """A call of the worker: ``work`` under the turn; what it raised, if anything."""

    def __init__(self, work: object) -> None:
        super().__init__(daemon=True)
        self._work = work
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with PROCESS_TURN.held():
                self._work()  # type: ignore[operator]
        except BaseException as exc:  # reported by the test
            self.failure = exc


@pytest.fixture
def store(tmp_path: Path) -> CaStore:
    """Closed by each test (a deadlock would hold its locks for ever: not closed then)."""
    return CaStore.open(tmp_path / "ca.db", create=True)


def _close_beside(store: CaStore, what: str, work: Callable[[threading.Event], None]) -> None:
    """One call does ``work``, which sets its event once it has given the turn up inside
    (a ``what`` of ``store``); another call, holding the turn meanwhile, closes ``store``
    (the bank stopping). Both must end, neither failing."""
    aside = threading.Event()

    def close() -> None:
        assert aside.wait(ENDS_WITHIN_S)
        store.close()

    worker, closer = Call(lambda: work(aside)), Call(close)
    worker.start()
    closer.start()
    closer.join(ENDS_WITHIN_S)
    worker.join(ENDS_WITHIN_S)
    assert not closer.is_alive(), f"close and the {what} wait for each other"
    assert not worker.is_alive()
    assert worker.failure is None and closer.failure is None


def test_close_from_a_call_holding_the_turn_waits_for_a_write_aside(store: CaStore) -> None:
    """A write gives the turn up inside its transaction (a ledger call), another call
    takes it and closes the store (the bank stopping)."""

    def write(aside: threading.Event) -> None:
        with store.write() as tx:
            tx.put_session(_session(b"A" * 16))
            with PROCESS_TURN.aside():
                aside.set()
                time.sleep(0.3)

    _close_beside(store, "write", write)
    with closing(CaStore.open(store.path)) as again, again.read() as tx:
        assert tx.session(b"A" * 16) is not None  # the write committed before the close


def test_close_waits_for_a_read_lock_whose_holder_waits_for_the_turn(store: CaStore) -> None:
    """A read that gives the turn up inside (nothing of the CA does yet; a query may):
    close, from a call holding the turn, waits for the reads' lock aside."""

    def read(aside: threading.Event) -> None:
        with store.read() as tx:
            tx.session(b"R" * 16)
            with PROCESS_TURN.aside():
                aside.set()
                time.sleep(0.3)

    _close_beside(store, "read", read)


def test_a_poll_waits_for_the_install_lock_aside(ec_bank: Bank) -> None:
    """One call installs (holding the install lock) and waits, aside, for the reads'
    lock; another call's poll, due meanwhile, finds the install lock taken. Once the
    reads' lock is free the first needs the turn back: the second must not hold it."""
    ca_db = open_ca_store(ec_bank.config)  # closed once the polls end (never if deadlocked)
    watcher = RevocationWatcher(ca_db, ec_bank.pki.trust, interval_s=0.0)

    def poll(force: bool) -> None:
        with suppress(CaError):
            watcher.check(force=force)

    ca_db._read_lock.acquire()  # held by a thread without the turn (as a read is)
    try:
        installing = Call(lambda: poll(True))
        installing.start()
        time.sleep(0.3)  # it holds the install lock, waiting aside for the reads'
        polling = Call(lambda: poll(False))
        polling.start()
        time.sleep(0.3)  # its poll is due, the re-publish taken: it waits to install
    finally:
        ca_db._read_lock.release()
    installing.join(ENDS_WITHIN_S)
    polling.join(ENDS_WITHIN_S)
    assert not installing.is_alive() and not polling.is_alive(), "the polls deadlocked"
    ca_db.close()
    assert installing.failure is None and polling.failure is None
