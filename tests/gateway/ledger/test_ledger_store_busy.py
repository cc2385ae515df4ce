"""The ledger busy (``StoreBusy``): a fault that passes, the database there and answering.

SQLite's write lock held by another program past the busy timeout (an operator's shell,
a VACUUM, a long write) was plain StoreUnavailable, lasting: a worker's replacement
meeting it as it migrated stopped the whole bank, its other worker serving. PostgreSQL's
connection slots all taken (53300) were lasting too, though a ledger shared by several
hosts meets such peaks and a connection closing ends them. Both pass now
(``gateway.child.PASSING_FAULTS``); a damaged file or a refused password still lasts, and
so does SQLITE_LOCKED, one connection's conflict with itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from gateway.child import fault_line, passes
from gateway.ledger import (
    SqliteLedgerStore,
    SqliteStoreConfig,
    StoreAway,
    StoreBusy,
    StoreUnavailable,
)
from gateway.ledger import postgres as pg_store
from gateway.ledger import sqlite as sqlite_store
from gateway.ledger.postgres_refusals import connect_refused, server_away, server_busy
from tests.gateway.ledger.test_ledger_store_away import REFUSED_TCP, SEVERAL, SOCKET


def test_a_sqlite_write_lock_held_past_the_busy_timeout_is_the_ledger_busy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    SqliteLedgerStore(str(path)).close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another program's long write
        with pytest.raises(StoreBusy, match="SQLITE_BUSY") as raised:
            SqliteLedgerStore(str(path), SqliteStoreConfig(busy_timeout_ms=100))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not isinstance(raised.value, StoreAway)
    assert passes(fault_line(raised.value))


@pytest.mark.parametrize(("code", "name"), [(5, "SQLITE_BUSY"), (517, "SQLITE_BUSY_SNAPSHOT")])
def test_sqlite_busy_is_busy_and_nothing_else_is(code: int, name: str) -> None:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode, error.sqlite_errorname = code, name
    assert isinstance(sqlite_store.translate_error(error), StoreBusy)
    damaged = sqlite3.DatabaseError("file is not a database")
    damaged.sqlite_errorcode, damaged.sqlite_errorname = 26, "SQLITE_NOTADB"
    assert not isinstance(sqlite_store.translate_error(damaged), StoreBusy)


def test_sqlite_locked_of_one_connections_own_statements_lasts() -> None:
    """SQLITE_LOCKED, with no shared cache, is a connection conflicting with itself (here a
    table dropped under a read of its own still open): the same at every try, a bug. Taken
    for the ledger busy, a replacement meeting it was started again for ever."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        cursor = conn.execute("SELECT x FROM t")
        cursor.fetchone()  # a read of its own still open
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute("DROP TABLE t")
    finally:
        conn.close()
    assert raised.value.sqlite_errorname == "SQLITE_LOCKED"
    error = sqlite_store.translate_error(raised.value)
    assert type(error) is StoreUnavailable, type(error)  # still an outage: UNAVAILABLE
    assert not passes(fault_line(error))


FULL = {
    "too-many-clients": f"connection failed: {SOCKET}FATAL:  sorry, too many clients already",
    "slots-reserved": f"connection failed: {SOCKET}FATAL:  remaining connection slots are"
    " reserved for non-replication superuser connections",
    "role-limit": f'connection failed: {SOCKET}FATAL:  too many connections for role "ledger"',
    "one-host-away-one-full": f"connection failed: {REFUSED_TCP}{SEVERAL}- host: '/run/pg',"
    f" port: '5432', hostaddr: None: connection failed: {SOCKET}FATAL:  sorry, too many"
    f" clients already\n- host: '127.0.0.1', port: '1', hostaddr: '127.0.0.1': connection"
    f" failed: {REFUSED_TCP}",
}


@pytest.mark.parametrize("said", FULL.values(), ids=FULL.keys())
def test_every_postgresql_connection_slot_taken_is_the_ledger_busy(said: str) -> None:
    refused = psycopg.OperationalError(said)
    assert server_busy(refused) and not server_away(refused)
    error = connect_refused(refused, ())
    assert isinstance(error, StoreBusy) and passes(fault_line(error))


def test_a_full_server_beside_a_refusing_one_lasts() -> None:
    said = (
        f"connection failed: {SOCKET}FATAL:  sorry, too many clients already{SEVERAL}- host:"
        f" '/run/pg', port: '5432', hostaddr: None: connection failed: {SOCKET}FATAL:  sorry,"
        f" too many clients already\n- host: '/run/pg2', port: '5432', hostaddr: None:"
        f' connection failed: {SOCKET}FATAL:  password authentication failed for user "t"'
    )
    assert not server_busy(psycopg.OperationalError(said))
    assert type(connect_refused(psycopg.OperationalError(said), ())) is StoreUnavailable


def test_too_many_connections_by_its_sqlstate_is_busy() -> None:
    error = pg_store.translate_error(pg_errors.TooManyConnections("too many clients"))
    assert isinstance(error, StoreBusy) and not isinstance(error, StoreAway)
    full = pg_store.translate_error(pg_errors.DiskFull("could not extend file"))
    assert not isinstance(full, StoreBusy)
