"""A PostgreSQL migration runs without the statement timeout, and only the migration.

Version 4's indexes take minutes on a ledger of many millions of rows, far past the
store's statement timeout; cancelled, the migration would roll back at every start and
the store would never open. Here the timeout is lowered and a migration step made longer
than it, which is the same race in milliseconds.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, PostgresStoreConfig, StoreUnavailable, schema
from gateway.ledger.postgres_migration import MIGRATION_LOCK_KEY
from tests.gateway.ledger.ledger_support import PgCluster

# The lowered statement timeout, and how long the slow step (or a held lock) lasts: three
# times as long, so only a migration run without the timeout gets through.
TIMEOUT_MS = 100
SLOW_SECONDS = 0.3


def _lowered() -> PostgresStoreConfig:
    return PostgresStoreConfig(statement_timeout_ms=TIMEOUT_MS)


def _version(store: PostgresLedgerStore) -> int:
    row = store.read(lambda tx: tx.one("SELECT version FROM schema_version"))
    assert row is not None
    return int(row["version"])


def test_a_migration_step_longer_than_the_statement_timeout_completes(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    conninfo = pg_cluster.new_schema()
    PostgresLedgerStore(conninfo).close()  # a ledger at this code's version
    # The next release's migration, one slow statement (as a CREATE INDEX on a big ledger).
    monkeypatch.setattr(
        schema, "MIGRATIONS", (*schema.MIGRATIONS, (f"SELECT pg_sleep({SLOW_SECONDS})",))
    )
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    store = PostgresLedgerStore(conninfo, _lowered())
    try:
        assert _version(store) == schema.SCHEMA_VERSION
        # The timeout is lifted for the migration only: an operation still has it.
        with pytest.raises(StoreUnavailable, match="57014"):
            store.execute(lambda tx: tx.run(f"SELECT pg_sleep({SLOW_SECONDS})"))
    finally:
        store.close()


def test_the_wait_for_another_hosts_migration_is_not_cut_short(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    opened: list[PostgresLedgerStore | BaseException] = []

    def open_store() -> None:
        try:
            opened.append(PostgresLedgerStore(conninfo, _lowered()))
        except BaseException as exc:  # reported by the assertion below
            opened.append(exc)

    with psycopg.connect(conninfo, autocommit=True) as other, other.transaction():
        # Another host migrating: it holds the migration lock for longer than the timeout.
        other.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        opener = threading.Thread(target=open_store)
        opener.start()
        time.sleep(SLOW_SECONDS)  # the store queues on the lock meanwhile
    opener.join()
    (store,) = opened
    assert isinstance(store, PostgresLedgerStore), store
    try:
        assert _version(store) == schema.SCHEMA_VERSION
    finally:
        store.close()
