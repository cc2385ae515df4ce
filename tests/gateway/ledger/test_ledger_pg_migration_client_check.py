"""The PostgreSQL migration's check that its bank is still connected, where the server
can make it and where it cannot.

The migration's session sets ``client_connection_check_interval`` so that a bank killed
mid-migration does not leave its statement running on the server
(``test_ledger_pg_migration_killed``). A server whose platform cannot tell a closed
socket (Windows; PostgreSQL 14 outside Linux) refuses any value but 0 with SQLSTATE
22023, and every migration failed there: a new, empty database could not be opened. The
refusal is forced here, on Linux, with a value every server refuses alike (-1).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, StoreError, postgres_migration, schema
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import PgCluster

# A last migration step that records the setting as the migration's session has it.
PROBE = (
    "CREATE TABLE client_check_probe AS"
    " SELECT current_setting('client_connection_check_interval') AS interval",
)


def _probed(tx: Transaction) -> object:
    return tx.one("SELECT interval FROM client_check_probe")


def _version(tx: Transaction) -> object:
    return tx.one("SELECT version FROM schema_version")


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This code's schema and PROBE after it."""
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, PROBE))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)


@pytest.mark.usefixtures("probed")
def test_the_migrations_session_checks_for_its_client(pg_cluster: PgCluster) -> None:
    # Set in a savepoint, the setting outlives it: the whole transaction checks.
    store = PostgresLedgerStore(pg_cluster.new_schema())
    try:
        assert store.read(_probed) == {"interval": "1s"}
    finally:
        store.close()


@pytest.mark.usefixtures("probed")
def test_a_server_that_cannot_check_still_migrates_and_says_so_once(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(postgres_migration, "MIGRATION_CLIENT_CHECK_MS", -1)
    with caplog.at_level(logging.WARNING, logger="setpay.ledger"):
        store = PostgresLedgerStore(pg_cluster.new_schema())  # every version, from none
    try:
        assert store.read(_version) == {"version": schema.SCHEMA_VERSION}
        assert store.read(_probed) == {"interval": "0"}
        said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
        assert len(said) == 1
        assert "without checking that the bank stays connected" in said[0]
    finally:
        store.close()


def test_any_other_failure_of_the_setting_still_fails_the_migration(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the platform's refusal (22023) is gone without: here the server fails the
    # statement for another reason (division by zero, 22012).
    real_execute = psycopg.Connection.execute

    def execute(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and "client_connection_check_interval" in query:
            query = "SELECT 1 / 0"
        return real_execute(self, query, *args, **kwargs)

    conninfo = pg_cluster.new_schema()
    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    with pytest.raises(StoreError, match="SQLSTATE 22012"):
        PostgresLedgerStore(conninfo)
    monkeypatch.undo()
    with psycopg.connect(conninfo) as conn:  # nothing of the schema was written
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    assert tables == (0,)
