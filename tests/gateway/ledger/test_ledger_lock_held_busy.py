"""A lock another holds is the ledger busy (``StoreBusy``), a fault that passes, wherever
it is met: the write turn between processes (``write_lock``) kept by a peer past the
store's busy timeout, as SQLite's own BUSY is; PostgreSQL's lock not available (55P03,
another session's past ``lock_timeout``, or NOWAIT), as every connection slot taken is.
Both were plain StoreUnavailable, lasting: a worker's replacement meeting one as it
starts stopped the bank (``gateway.child.PASSING_FAULTS``). A statement cancelled
(57014, the statement timeout among others) stays lasting: it may be a query too slow
for its timeout at every try as well as a wait for a lock."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from gateway.child import fault_line, passes
from gateway.ledger import PostgresLedgerStore, StoreBusy, StoreUnavailable
from gateway.ledger import postgres as pg_store
from gateway.ledger.store import Transaction
from gateway.ledger.write_lock import WriteTurn
from tests.gateway.ledger.ledger_support import PgCluster


def _take(turn: WriteTurn) -> None:
    with turn.hold():
        pass


def test_a_write_turn_kept_by_a_peer_is_the_ledger_busy(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db.write-lock")
    peer, mine = WriteTurn(path, 5.0), WriteTurn(path, 0.05)
    try:
        with peer.hold(), pytest.raises(StoreBusy, match="kept the ledger's write lock") as raised:
            _take(mine)
        assert passes(fault_line(raised.value))
        _take(mine)  # let go: taken
    finally:
        peer.close()
        mine.close()


def test_a_lock_not_available_is_the_ledger_busy_and_a_cancelled_statement_lasts() -> None:
    held = pg_store.translate_error(pg_errors.LockNotAvailable("could not obtain lock"))
    assert isinstance(held, StoreBusy) and passes(fault_line(held))
    cancelled = pg_store.translate_error(pg_errors.QueryCanceled("statement timeout"))
    assert type(cancelled) is StoreUnavailable and not passes(fault_line(cancelled))


def _insert_request(tx: Transaction) -> int:
    return tx.run(
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
        " VALUES (?, ?, ?, ?)",
        os.urandom(32), b"d", b"a", 1,
    )  # fmt: skip


def test_a_row_another_session_locks_is_the_ledger_busy(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    store = PostgresLedgerStore(conninfo)
    try:
        store.execute(_insert_request)
        with psycopg.connect(conninfo) as holder:
            holder.execute("SELECT * FROM requests FOR UPDATE")
            with pytest.raises(StoreBusy, match="SQLSTATE 55P03"):
                store.execute(lambda tx: tx.all("SELECT * FROM requests FOR UPDATE NOWAIT"))
    finally:
        store.close()
