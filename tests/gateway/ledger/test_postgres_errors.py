"""What each PostgreSQL error means to the ledger: an outage, or a failure.

The PostgreSQL store must answer a fault as the SQLite one does (``gateway.sqlite_errors``):
a database that cannot be used now (unreachable, shutting down, out of resources, a hot
standby refusing writes, damaged data) is ``StoreUnavailable``, answered UNAVAILABLE so
that the merchant resends; a statement that is wrong is ``StoreError``, a signed refusal.
A damaged page or index used to be a plain ``StoreError``, and a read-only server too.

Each error here is raised by the real server of the test cluster: for a real cause where
one can be made on a shared cluster (a damaged page or index of a temporary table, a
session refusing writes as every session on a hot standby does, a terminated session, a
lock held, too many arguments); else by PL/pgSQL's ``RAISE ... USING ERRCODE``, the
server raising that SQLSTATE for no cause of its own (a crash of another backend, a
server not yet accepting connections, an I/O error, a full disk cannot be had without
disturbing the other tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors

from gateway.ledger import PostgresLedgerStore, PostgresStoreConfig, StoreError, StoreUnavailable
from gateway.ledger.store import Row, Transaction
from tests.gateway.ledger.ledger_support import PgCluster

# Local buffers for temporary tables of one session: PostgreSQL's least (100 pages of
# 8 kB), so that a few hundred pages of filler push a table's page out to its file.
TEMP_BUFFERS = 100
# Filler rows of about 1 kB each: some 280 pages, well over TEMP_BUFFERS.
FILLER_ROWS = 2000
# One more argument than a PostgreSQL function may take (FUNC_MAX_ARGS).
TOO_MANY_ARGUMENTS = 101
# A PostgreSQL page header: what a damaged page shows first.
PAGE_HEADER_BYTES = 24
PAGE_BYTES = 8192


@pytest.fixture
def store(pg_cluster: PgCluster) -> Iterator[PostgresLedgerStore]:
    opened = PostgresLedgerStore(pg_cluster.new_schema(), PostgresStoreConfig(max_attempts=2))
    try:
        yield opened
    finally:
        opened.close()


def _one(tx: Transaction, sql: str) -> Row:
    row = tx.one(sql)
    assert row is not None
    return row


def _push_out_of_local_buffers(tx: Transaction) -> None:
    tx.run(
        "CREATE TEMP TABLE filler ON COMMIT DROP AS"
        f" SELECT repeat('x', 1000) AS pad FROM generate_series(1, {FILLER_ROWS})"
    )


def _damage(pg_cluster: PgCluster, tx: Transaction, relation: str, what: bytes) -> None:
    path = _one(tx, f"SELECT pg_relation_filepath('{relation}') AS path")["path"]
    with (pg_cluster.data / path).open("r+b") as file:
        file.write(what)


def _damaged_page(pg_cluster: PgCluster) -> Callable[[Transaction], object]:
    """An operation that reads a page of a table whose header the disk garbled."""

    def work(tx: Transaction) -> object:
        tx.run(f"SET LOCAL temp_buffers = {TEMP_BUFFERS}")
        tx.run("CREATE TEMP TABLE damaged (v integer) ON COMMIT DROP")
        tx.run("INSERT INTO damaged (v) VALUES (1)")
        _push_out_of_local_buffers(tx)
        _damage(pg_cluster, tx, "damaged", b"\xff" * PAGE_HEADER_BYTES)
        return tx.all("SELECT v FROM damaged")

    return work


def _damaged_index(pg_cluster: PgCluster) -> Callable[[Transaction], object]:
    """An operation that looks a value up in an index whose metapage the disk zeroed."""

    def work(tx: Transaction) -> object:
        tx.run(f"SET LOCAL temp_buffers = {TEMP_BUFFERS}")
        tx.run("CREATE TEMP TABLE indexed (v integer) ON COMMIT DROP")
        tx.run("INSERT INTO indexed (v) VALUES (1)")
        tx.run("CREATE INDEX indexed_v ON indexed (v)")
        _push_out_of_local_buffers(tx)
        _damage(pg_cluster, tx, "indexed_v", b"\0" * PAGE_BYTES)
        tx.run("SET LOCAL enable_seqscan = off")
        tx.run("SET LOCAL enable_bitmapscan = off")
        return tx.all("SELECT v FROM indexed WHERE v = 1")

    return work


@pytest.mark.parametrize(
    ("damaged", "sqlstate"), [(_damaged_page, "XX001"), (_damaged_index, "XX002")]
)
def test_damaged_data_is_an_outage_as_on_sqlite(
    pg_cluster: PgCluster,
    store: PostgresLedgerStore,
    damaged: Callable[[PgCluster], Callable[[Transaction], object]],
    sqlstate: str,
) -> None:
    # A signed refusal would be recorded by the merchant as final, though nothing was
    # decided; SQLite's CORRUPT is UNAVAILABLE, and so must PostgreSQL's be.
    with pytest.raises(StoreUnavailable, match=f"SQLSTATE {sqlstate}") as raised:
        store.execute(damaged(pg_cluster))
    assert raised.value.__cause__ is not None
    assert type(raised.value.__cause__) is pg_errors.lookup(sqlstate)
    assert store.execute(lambda tx: _one(tx, "SELECT 1 AS one")) == {"one": 1}


def test_a_hot_standby_is_an_outage_and_the_store_follows_the_failover(
    store: PostgresLedgerStore,
) -> None:
    # The pooled session is made to refuse writes as every session on a hot standby
    # does: the server its connection reached was demoted, and a failover moved the
    # store's name on to a new primary, which new connections reach.
    store.execute(lambda tx: tx.run("SET SESSION default_transaction_read_only = on"))
    with pytest.raises(StoreUnavailable, match="SQLSTATE 25006"):
        store.execute(_insert_request)
    # The refused connection was not pooled again: the next operation reaches a server
    # that writes.
    assert store.execute(_insert_request) == 1


def _insert_request(tx: Transaction) -> int:
    return tx.run(
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
        " VALUES (?, ?, ?, ?)",
        os.urandom(32), b"d", b"a", 1,
    )  # fmt: skip


def test_a_write_in_a_read_is_the_readers_mistake_not_an_outage(
    store: PostgresLedgerStore,
) -> None:
    # In the store's own READ ONLY snapshot, 25006 says the query writes: a bug, the
    # same every time, never a standby (which serves reads).
    with pytest.raises(StoreError, match="SQLSTATE 25006") as raised:
        store.read(_insert_request)
    assert not isinstance(raised.value, StoreUnavailable)


def test_a_program_limit_is_the_statements_fault(store: PostgresLedgerStore) -> None:
    # psycopg calls class 54 an OperationalError; but a statement over a limit is over
    # it on every try, and UNAVAILABLE would have the merchant resend it for ever.
    arguments = ", ".join(["1"] * TOO_MANY_ARGUMENTS)
    with pytest.raises(StoreError, match="SQLSTATE 54023") as raised:
        store.execute(lambda tx: tx.one(f"SELECT concat({arguments}) AS c"))
    assert not isinstance(raised.value, StoreUnavailable)


def test_a_terminated_session_is_an_outage(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    store = PostgresLedgerStore(conninfo)

    def terminated(tx: Transaction) -> object:
        pid = _one(tx, "SELECT pg_backend_pid() AS pid")["pid"]
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        return tx.one("SELECT 1 AS one")

    try:
        with pytest.raises(StoreUnavailable, match=r"SQLSTATE 57P01"):
            store.execute(terminated)
    finally:
        store.close()


def test_a_lock_not_available_is_an_outage(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    store = PostgresLedgerStore(conninfo)
    try:
        store.execute(_insert_request)
        with psycopg.connect(conninfo) as holder:
            holder.execute("SELECT * FROM requests FOR UPDATE")
            with pytest.raises(StoreUnavailable, match="SQLSTATE 55P03"):
                store.execute(lambda tx: tx.all("SELECT * FROM requests FOR UPDATE NOWAIT"))
    finally:
        store.close()


# SQLSTATEs raised by RAISE ... USING ERRCODE, and whether each is an outage.
RAISED = {
    "08006": True,  # connection_failure
    "53100": True,  # disk_full
    "53200": True,  # out_of_memory
    "53300": True,  # too_many_connections
    "57014": True,  # query_canceled (statement_timeout)
    "57P02": True,  # crash_shutdown: another backend crashed
    "57P03": True,  # cannot_connect_now: starting up, shutting down, in recovery
    "58000": True,  # system_error
    "58030": True,  # io_error
    "40P01": True,  # deadlock_detected, on every attempt
    "25006": True,  # read_only_sql_transaction, outside a read
    "25P03": True,  # idle_in_transaction_session_timeout: the server ended the session
    "XX001": True,  # data_corrupted
    "XX002": True,  # index_corrupted
    "XX000": False,  # internal_error: PostgreSQL's own bug, not the database's state
    "54000": False,  # program_limit_exceeded
    "42P01": False,  # undefined_table
    "23514": False,  # check_violation
    "22003": False,  # numeric_value_out_of_range
}


@pytest.mark.parametrize("sqlstate", RAISED)
def test_each_sqlstate_raised_by_the_server(store: PostgresLedgerStore, sqlstate: str) -> None:
    raise_it = f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$"
    with pytest.raises(StoreError, match=f"SQLSTATE {sqlstate}") as raised:
        store.execute(lambda tx: tx.run(raise_it))
    assert isinstance(raised.value, StoreUnavailable) is RAISED[sqlstate], repr(raised.value)
    assert "raised" not in str(raised.value)  # the server's words stay in the cause


def _currval_never_drawn(tx: Transaction) -> object:
    tx.run("CREATE TEMPORARY SEQUENCE never_drawn")
    return tx.one("SELECT currval('never_drawn') AS v")


def _server_only_setting(tx: Transaction) -> object:
    return tx.run("SET LOCAL shared_buffers = '1MB'")


def _new_enum_value_used(tx: Transaction) -> object:
    tx.run("ALTER TYPE colour ADD VALUE 'blue'")
    return tx.one("SELECT 'blue'::colour AS c")


# Class 55 errors a statement makes by its own doing, and the same on every try: the
# program asked for an object not in the state it needs (an order of statements, a
# setting only the server's start may set, an enum value its own transaction added).
OWN_PREREQUISITES = {
    "55000": _currval_never_drawn,  # object_not_in_prerequisite_state
    "55P02": _server_only_setting,  # cant_change_runtime_param
    "55P04": _new_enum_value_used,  # unsafe_new_enum_value_usage
}


@pytest.mark.parametrize("sqlstate", OWN_PREREQUISITES)
def test_an_object_not_ready_for_the_statement_is_the_statements_fault(
    store: PostgresLedgerStore, sqlstate: str
) -> None:
    # psycopg calls class 55 an OperationalError, as it does a lock not available
    # (55P03, an outage); these are the program's or the schema's bug, and UNAVAILABLE
    # would have the merchant resend the request for ever.
    store.execute(lambda tx: tx.run("CREATE TYPE colour AS ENUM ('red')"))
    with pytest.raises(StoreError, match=f"SQLSTATE {sqlstate}") as raised:
        store.execute(OWN_PREREQUISITES[sqlstate])
    assert not isinstance(raised.value, StoreUnavailable)
    assert type(raised.value.__cause__) is pg_errors.lookup(sqlstate)
