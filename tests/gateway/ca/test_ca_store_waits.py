"""A CA write waiting for ca.db holds neither the worker's turn nor the reads, nor the calls
that poll the revocation watcher.

Another process may hold ca.db's write lock for seconds (``setpay ca revoke`` on a slow
token, another worker's issuance, an operator's sqlite3 shell). A CA call then waits in
SQLite's busy handler, up to the busy timeout. It used to wait holding the worker's turn
to compute (``gateway.cpu_turn``), which every call of the worker takes, the gateway's
authorizations among them, and the store's one connection, on which the revocation
watcher polls ca.db for every call of the worker: one wallet's CardCInit stalled every
payment of its worker for as long as the lock lasted (up to the busy timeout, again at
each such call). Now a write waits aside from the turn, and reads have a connection of
their own, which WAL lets read the last commit while a writer waits. And a re-publish of
the CRLs and BCI waiting for ca.db in one call's poll no longer holds the others' polls.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CaStore, CertificateAuthority, RevocationWatcher, StoreError
from gateway.ca import store as ca_store
from gateway.ca.publishing import current_revocation
from gateway.ca.records import Session
from gateway.cpu_turn import PROCESS_TURN
from setcore.registration_cardholder import build_card_c_init_request
from setpay.v1 import registration_pb2

from .conftest import Bank, serving
from .revocation_support import (
    DUE_AGE,
    SHORT_BUSY_TIMEOUT_MS,
    authority_keys,
    bank_trust,
    new_ca_db,
)

# How long another connection holds ca.db's write lock in these tests, and how soon after
# a call starts waiting for it the others are timed: a call that waits for the waiting
# one takes about the difference, far above ``PROMPT_S``; one that does not, milliseconds.
LOCK_S = 2.5
SETTLE_S = 0.4
PROMPT_S = 1.0


def _session(lid_ca: bytes) -> Session:
    return Session(lid_ca, b"lid-ee", 1, 0, None, False, "", "", 0, 1)


@contextmanager
def locked_for(path: Path, seconds: float) -> Iterator[None]:
    """ca.db's write lock held by another connection for ``seconds`` from now, as another
    process holds it; the block runs meanwhile."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, other.rollback)
    release.start()
    try:
        yield
    finally:
        release.join()
        other.close()


def timed(work: Callable[[], object]) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


class Waiting(threading.Thread):
    """A call of the worker, under its turn as the server runs it, that writes ca.db."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._work = work
        self.failure: BaseException | None = None
        self.turn_after = -1

    def run(self) -> None:
        try:
            with PROCESS_TURN.held():
                self._work()
                self.turn_after = PROCESS_TURN._depth()  # the turn taken back after the wait
        except BaseException as exc:  # reported by the test
            self.failure = exc


def take_turn() -> None:
    """What every other call of the worker does first (``gateway.server``)."""
    with PROCESS_TURN.held(within=LOCK_S * 2):
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as opened:
        yield opened


def _write(store: CaStore, lid_ca: bytes) -> Callable[[], None]:
    def write() -> None:
        with store.write() as tx:
            tx.put_session(_session(lid_ca))

    return write


def test_a_write_waiting_for_ca_db_leaves_the_turn_to_the_workers_other_calls(
    store: CaStore,
) -> None:
    with locked_for(store.path, LOCK_S):
        writer = Waiting(_write(store, b"W" * 16))
        writer.start()
        time.sleep(SETTLE_S)
        other_call = timed(take_turn)
        writer.join()
    assert other_call < PROMPT_S
    # The write went through once ca.db was free, and its call had its turn back.
    assert writer.failure is None and writer.turn_after == 1
    with store.read() as tx:
        assert tx.session(b"W" * 16) is not None


def test_a_read_does_not_queue_behind_a_write_waiting_for_ca_db(store: CaStore) -> None:
    with store.write() as tx:
        tx.put_session(_session(b"R" * 16))
    with locked_for(store.path, LOCK_S):
        writer = Waiting(_write(store, b"W" * 16))
        writer.start()
        time.sleep(SETTLE_S)
        found: list[Session | None] = []

        def read() -> None:
            with store.read() as tx:
                found.append(tx.session(b"R" * 16))

        reading = timed(read)
        writer.join()
    assert reading < PROMPT_S
    assert found and found[0] is not None
    assert writer.failure is None


def test_a_read_sees_every_write_committed_before_it(store: CaStore) -> None:
    """Reads and writes on two connections: a read begun after a commit sees it."""
    for n in range(3):
        lid_ca = bytes([n]) * 16
        with store.write() as tx:
            tx.put_session(_session(lid_ca))
        with store.read() as tx:
            assert tx.session(lid_ca) is not None


def test_a_write_past_the_busy_timeout_is_still_an_outage_and_keeps_the_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting aside changes nothing of what a write that cannot have ca.db gets: the
    outage (UNAVAILABLE), nothing written, and its call holding its turn again."""
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as store:
        with locked_for(store.path, SHORT_BUSY_TIMEOUT_MS / 1000 * 5):
            writer = Waiting(_write(store, b"B" * 16))
            writer.start()
            writer.join()
        assert isinstance(writer.failure, StoreError)
        assert "SQLITE_BUSY" in str(writer.failure)
        with store.read() as tx:
            assert tx.session(b"B" * 16) is None


def test_a_closed_store_refuses_reads_and_writes(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    store.close()
    for transaction in (store.read, store.write):
        with pytest.raises(StoreError, match="closed"), transaction():
            pass  # pragma: no cover - never entered


def test_a_served_call_waiting_for_ca_db_holds_no_other_call_of_the_worker(
    ec_bank: Bank,
) -> None:
    """Through the server: while one wallet's CardCInit waits for ca.db, another call of
    the same process is answered at once, and the revocation watcher's poll (which every
    gateway call of the worker makes) does not wait either."""
    with closing(open_ca_store(ec_bank.config)) as store:
        ca = CertificateAuthority(
            ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer
        )
        ca.certificates([])  # the first call sweeps ca.db: done before the lock
        with serving(ca) as stub, locked_for(store.path, LOCK_S):
            answers: list[registration_pb2.CardCInitResponse] = []
            request, _ = build_card_c_init_request(ec_bank.brand_id, os.urandom(8))
            caller = threading.Thread(target=lambda: answers.append(stub.CardCInit(request)))
            caller.start()
            time.sleep(SETTLE_S)
            read = registration_pb2.GetBrandCRLIdentifierRequest(brand_id=ec_bank.brand_id)
            other_call = timed(lambda: stub.GetBrandCRLIdentifier(read, timeout=LOCK_S * 2))
            poll = timed(lambda: ca.watcher.check(force=True, strict=False))
            caller.join()
        assert other_call < PROMPT_S
        assert poll < PROMPT_S
        # The waiting call was answered once ca.db was free.
        assert answers and answers[0].card_c_init_res


# -- the revocation watcher's re-publish, waiting for ca.db --------------------------


@pytest.fixture
def due_watcher(ec_bank: Bank, tmp_path: Path) -> Iterator[tuple[RevocationWatcher, CaStore]]:
    """A watcher of the bank's CA keys over a ca.db whose revocation data is due for
    re-publishing (still current, and installed in the trust store already), polling at
    every call."""
    with closing(new_ca_db(tmp_path / "ca.db", ec_bank.pki, age=DUE_AGE)) as store:
        trust = bank_trust(ec_bank.pki)
        found = current_revocation(store)
        assert found is not None
        trust.update_revocation(found[1].bci, found[1].crls, datetime.now(UTC))
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        yield RevocationWatcher(store, trust, keys=keys, interval_s=0.0), store


def test_a_call_does_not_wait_for_a_re_publish_waiting_for_ca_db(
    due_watcher: tuple[RevocationWatcher, CaStore],
) -> None:
    """One call's poll re-publishes and waits for ca.db's lock; the worker's other calls,
    which poll too (every gateway call does), go on without it (installing ca.db's
    newest BCI meanwhile: ``test_ca_watcher_skip``)."""
    watcher, store = due_watcher
    with locked_for(store.path, LOCK_S):
        publishing = threading.Thread(target=watcher.check)
        publishing.start()
        time.sleep(SETTLE_S)
        other_call = timed(watcher.check)
        publishing.join()
    assert other_call < PROMPT_S
    # The waiting poll re-published once ca.db was free.
    with store.read() as tx:
        assert tx.latest_bci_sequence() == 2


def test_a_forced_poll_still_waits_for_the_poll_under_way(
    due_watcher: tuple[RevocationWatcher, CaStore],
) -> None:
    """``force`` (right after a revocation made here) waits for the poll under way and
    polls after it: it must install what ca.db holds then."""
    watcher, store = due_watcher
    with locked_for(store.path, LOCK_S):
        publishing = threading.Thread(target=watcher.check)
        publishing.start()
        time.sleep(SETTLE_S)
        forced = timed(lambda: watcher.check(force=True))
        publishing.join()
    assert forced > LOCK_S - SETTLE_S - PROMPT_S
    # It installed the re-published data, which the poll under way wrote before it.
    newest = current_revocation(store)
    assert newest is not None and newest[0].sequence_num == 2
    assert watcher.current() == newest[1]
