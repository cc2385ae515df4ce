"""A PostgreSQL ledger opened on a server that refuses writes: a hot standby during a
failover, or a database set ``default_transaction_read_only`` by its DBA.

A serving store rides through such a server (reads served, writes UNAVAILABLE until the
server writes again). Opening one did not: the schema check wrote (CREATE TABLE IF NOT
EXISTS) even when the schema was current, so a bank could not start, nor a worker be
replaced, nor a `setpay bank` command that only reads run, until the server wrote again.
A schema that must change still cannot be opened there, and nothing of it changes.
"""

from __future__ import annotations

import os
import re

import pytest

from gateway.ledger import PostgresLedgerStore, StoreUnavailable, schema
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import TEST_DATABASE, PgCluster

READ_ONLY = {"default_transaction_read_only": "on"}


def _read_only(pg_cluster: PgCluster, conninfo: str) -> str:
    """``conninfo``'s schema, reached by sessions that refuse writes."""
    found = re.search(r"search_path=(\w+)", conninfo)
    assert found is not None
    return pg_cluster.conninfo(TEST_DATABASE, found.group(1), READ_ONLY)


def _version(tx: Transaction) -> object:
    return tx.one("SELECT version FROM schema_version")


def _insert_request(tx: Transaction) -> int:
    return tx.run(
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
        " VALUES (?, ?, ?, ?)",
        os.urandom(32), b"d", b"a", 1,
    )  # fmt: skip


def test_a_current_ledger_opens_on_a_server_that_refuses_writes(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    PostgresLedgerStore(conninfo).close()  # a ledger at this code's version
    store = PostgresLedgerStore(_read_only(pg_cluster, conninfo))
    try:
        assert store.read(_version) == {"version": schema.SCHEMA_VERSION}
        with pytest.raises(StoreUnavailable, match="SQLSTATE 25006"):
            store.execute(_insert_request)
    finally:
        store.close()


def test_a_ledger_to_migrate_does_not_open_there_and_is_left_as_it_was(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    conninfo = pg_cluster.new_schema()
    PostgresLedgerStore(conninfo).close()
    # The next release, one version more: it must write, and cannot.
    monkeypatch.setattr(
        schema, "MIGRATIONS", (*schema.MIGRATIONS, ("CREATE TABLE next_release (x INTEGER)",))
    )
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    with pytest.raises(StoreUnavailable, match="SQLSTATE 25006"):
        PostgresLedgerStore(_read_only(pg_cluster, conninfo))
    monkeypatch.undo()
    store = PostgresLedgerStore(conninfo)
    try:
        assert store.read(_version) == {"version": schema.SCHEMA_VERSION}
        found = store.read(lambda tx: tx.one("SELECT to_regclass('next_release') AS t"))
        assert found == {"t": None}
    finally:
        store.close()


def test_an_empty_database_does_not_open_there(pg_cluster: PgCluster) -> None:
    with pytest.raises(StoreUnavailable, match="SQLSTATE 25006"):
        PostgresLedgerStore(pg_cluster.new_schema(settings=READ_ONLY))
