"""No wait inside a CA write waits for the worker's turn afterwards with ca.db's lock held.

A merchant's certification opens its ledger account inside the CA's write transaction,
and a certificate, CRL or answer is signed inside one; each such wait (the ledger's reply,
a key backend waiting for its token) gives the turn up. Taking it back used to wait for
it with ca.db's lock held: `setpay ca revoke` and the other workers were refused
SQLITE_BUSY for as long as another call of the worker held the turn. Now a wait inside a
write takes the turn back only if it is free; else the write goes on without it and waits
for it once ca.db's lock is let go (``gateway.cpu_turn.CpuTurn.unwaited``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path

import pytest

from gateway.ca import CaStore
from gateway.cpu_turn import PROCESS_TURN, CpuTurn
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from gateway.ledger.remote import RemoteLedgerStore
from gateway.ledger.service import LedgerService
from hsm.base import KeyUsage
from hsm.observer import waiting
from setcore.freshness import new_id
from setcore.registration_merchant import MerchantIdentity, open_merchant_cert_response

from .conftest import Bank
from .flows import merchant_request, new_key, start_merchant
from .ledger_issuer_support import ca_asking
from .test_ca_store_waits import _session

# How long another call of the worker holds the turn once the wait has given it up.
HOLD_S = 2.0
# ca.db may be refused to another process for the write's own work, not for the hold.
SHUT_AT_MOST_S = 0.5


def _holder(
    has_turn: threading.Event,
    turn: CpuTurn = PROCESS_TURN,
    release: threading.Event | None = None,
) -> threading.Thread:
    """Another call of the worker (or a token call that does not return): takes ``turn``
    as soon as it is given up, says so (``has_turn``), and holds it until ``release`` is
    set (HOLD_S without one, at most 5 s with one)."""

    def hold() -> None:
        with turn.held():
            has_turn.set()
            if release is None:
                time.sleep(HOLD_S)
            else:
                release.wait(5)

    return threading.Thread(target=hold, daemon=True)


@contextmanager
def ledger_process(path: Path) -> Iterator[Ledger]:
    """A ledger as the bank's workers reach it: served on a turn of its own (the ledger
    process's), over its socket, the worker's calls stepping aside from the worker's turn."""
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))  # short: a socket path
    socket_path = str(directory / "ledger.sock")
    service = LedgerService(SqliteLedgerStore(path, cpu=CpuTurn()), socket_path)
    try:
        ledger = Ledger(
            RemoteLedgerStore(socket_path),
            LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32)),
        )
        try:
            yield ledger
        finally:
            ledger.close()
    finally:
        service.close()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def ledger_in_worker(path: Path) -> Iterator[Ledger]:
    """A ledger as the default configuration has it: SQLite in the worker, its writer
    thread applying each group under the worker's own turn."""
    ledger = Ledger(
        SqliteLedgerStore(path), LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32))
    )
    try:
        yield ledger
    finally:
        ledger.close()


class HeldWhileAside(LedgerDirectory):
    """The bank's acquirer: as the account opening steps aside (every ledger call does),
    another call of the worker takes the turn and holds it."""

    holder: threading.Thread | None = None

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        self.holder = _holder(threading.Event())
        self.holder.start()  # waits for the turn until this ledger call steps aside
        super().merchant_registered(merchant_id, name)


def _refusals_while(alive: threading.Thread, path: Path) -> list[float]:
    """When another process's BEGIN IMMEDIATE on ca.db was refused while ``alive`` ran."""
    refused: list[float] = []
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        started = time.monotonic()
        while alive.is_alive():
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            except sqlite3.OperationalError:
                refused.append(time.monotonic() - started)
            time.sleep(0.02)
    finally:
        other.close()
    return refused


def certified_while_watched(bank: Bank, identity: MerchantIdentity) -> float:
    """``identity`` certified as a merchant by ``bank``'s CA (its answer opened, complete),
    another process trying ca.db's write lock meanwhile: how long ca.db was shut to it,
    from its first refusal to its last."""
    session = start_merchant(bank, identity)
    sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
    request, state = merchant_request(session, sig, kex)
    answer: list[object] = []
    caller = threading.Thread(target=lambda: answer.append(bank.stub.Cert(request)))
    caller.start()
    refused = _refusals_while(caller, bank.ca._store.path)
    caller.join()
    outcome = open_merchant_cert_response(answer[0], state, session.trust)  # type: ignore[arg-type]
    assert outcome.complete
    return refused[-1] - refused[0] if refused else 0.0


@pytest.mark.parametrize("served", [ledger_process, ledger_in_worker], ids=["process", "worker"])
def test_a_merchant_certification_lets_ca_db_go_before_it_waits_for_the_turn(
    ec_bank: Bank, tmp_path: Path, served: Callable[[Path], AbstractContextManager[Ledger]]
) -> None:
    """The account opening steps aside and another call takes the turn, over the ledger
    as a served bank's workers reach it (the ledger process's, or the worker's own writer,
    which applies the group without the turn rather than wait for it): ca.db is shut to
    other processes only for the write's own work."""
    identity = MerchantIdentity(f"m-{new_id().hex()[:8]}", "Held Ltd")
    with served(tmp_path / "ledger.db") as ledger:
        directory = HeldWhileAside(ledger)
        with ca_asking(ec_bank, directory) as bank:
            shut = certified_while_watched(bank, identity)
            assert directory.holder is not None
            directory.holder.join()
        assert ledger.merchant_account(identity.merchant_id) is not None
    assert shut < SHUT_AT_MOST_S, f"ca.db shut to other processes for {shut:.2f} s"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaStore]:
    with closing(CaStore.open(tmp_path / "ca.db", create=True)) as opened:
        yield opened


def _write_around_a_wait(store: CaStore, lid_ca: bytes, during_wait: threading.Event) -> None:
    """A call of the worker writing ca.db with a key backend's wait inside (a token
    session another thread holds, as the CA signs): ``during_wait`` until it ends."""
    with PROCESS_TURN.held(), store.write() as tx:
        tx.put_session(_session(lid_ca))
        with waiting():  # the hook the worker's turn installed: aside
            during_wait.wait(5)


def test_a_key_backend_wait_inside_a_write_lets_ca_db_go_before_the_turn(
    store: CaStore,
) -> None:
    has_turn, done = threading.Event(), threading.Event()
    holder = _holder(has_turn)
    writer = threading.Thread(
        target=_write_around_a_wait, args=(store, b"K" * 16, done), daemon=True
    )
    writer.start()
    holder.start()
    assert has_turn.wait(5)
    done.set()  # the wait ends while the holder computes
    time.sleep(0.3)
    other = sqlite3.connect(store.path, isolation_level=None, timeout=0.5)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write: not shut out
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert holder.is_alive()  # the turn still the holder's meanwhile
    holder.join()
    writer.join(5)
    assert not writer.is_alive()
    with store.read() as tx:
        assert tx.session(b"K" * 16) is not None  # the write committed


def test_a_wait_inside_a_write_takes_a_free_turn_back_at_once(store: CaStore) -> None:
    depths: list[int] = []
    with PROCESS_TURN.held(), PROCESS_TURN.held(), store.write() as tx:
        tx.put_session(_session(b"F" * 16))
        with waiting():
            depths.append(PROCESS_TURN._depth())
        depths.append(PROCESS_TURN._depth())
    assert depths == [0, 2]
    assert PROCESS_TURN._owed() == 0
    free: list[bool] = []

    def probe() -> None:  # from another thread: the turn is re-entrant
        free.append(PROCESS_TURN._lock.acquire(blocking=False))
        if free[-1]:
            PROCESS_TURN._lock.release()

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join()
    assert free == [True]  # every level taken back was given back


def test_a_later_wait_of_a_write_on_paper_takes_a_free_turn_back_for_real() -> None:
    """A write gone on without the turn takes it at its next wait's end if it is free then,
    and that wait is no demand for it (the ledger's writer does not linger for it)."""
    turn = CpuTurn()
    release, has_turn = threading.Event(), threading.Event()
    other = _holder(has_turn, turn, release)
    wanting: list[int] = []
    with turn.held(), turn.unwaited():
        with turn.aside():
            other.start()
            assert has_turn.wait(5)
        assert (turn._depth(), turn._owed()) == (0, 1)  # on paper
        release.set()
        other.join()
        with turn.aside():
            wanting.append(turn.wanting)
        assert (turn._depth(), turn._owed()) == (1, 0)  # the free turn, taken for real
    assert wanting == [0]
    assert turn.wanting == 0
    assert turn._lock.acquire(blocking=False)
    turn._lock.release()


def test_a_wait_outside_a_write_still_waits_for_the_turn() -> None:
    """Only a write's transaction goes on without the turn: elsewhere a wait's end waits."""
    has_turn = threading.Event()
    holder = _holder(has_turn)
    with PROCESS_TURN.held():
        with PROCESS_TURN.aside():
            holder.start()
            assert has_turn.wait(5)
        assert not holder.is_alive()  # waited for the whole hold
        assert PROCESS_TURN._depth() == 1
    holder.join()


def test_levels_taken_on_paper_are_taken_for_real_at_the_blocks_end() -> None:
    turn = CpuTurn()
    release, has_turn = threading.Event(), threading.Event()
    other = _holder(has_turn, turn, release)
    seen: list[tuple[int, int]] = []
    with turn.held(), turn.unwaited():
        with turn.aside():
            other.start()
            assert has_turn.wait(5)
        seen.append((turn._depth(), turn._owed()))  # went on without it
        with turn.held():  # a nested helper taking it again does not wait either
            seen.append((turn._depth(), turn._owed()))
        assert turn.wanting == 2
        release.set()
    seen.append((turn._depth(), turn._owed()))
    other.join()
    assert seen == [(0, 1), (0, 2), (0, 0)]
    assert turn.wanting == 0
    assert turn._lock.acquire(blocking=False)  # nobody holds it
    turn._lock.release()


def test_a_turn_taken_inside_an_earlier_unwaited_block_is_given_back() -> None:
    """``unwaited`` begun by a thread without the turn, ``held`` inside, a wait inside that
    finds the turn taken: the ``held`` ends on paper, and nothing is left held."""
    turn = CpuTurn()
    release, has_turn = threading.Event(), threading.Event()
    other = _holder(has_turn, turn, release)
    with turn.unwaited():
        with turn.held():
            with turn.aside():
                other.start()
                assert has_turn.wait(5)
            assert turn._owed() == 1
        assert (turn._depth(), turn._owed()) == (0, 0)
        release.set()
    other.join()
    assert turn.wanting == 0
    assert turn._lock.acquire(blocking=False)
    turn._lock.release()
