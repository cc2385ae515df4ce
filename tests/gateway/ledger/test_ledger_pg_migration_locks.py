"""A PostgreSQL migration gives way to the transactions on a table it must lock.

A report or a pg_dump keeps ACCESS SHARE on ``transfers`` for as long as it reads. Version
6's DROP INDEX needs ACCESS EXCLUSIVE there; waiting for it without a limit, its request
would queue every statement of the earlier release's bank, still serving, on
``transfers`` behind the reader, until each failed at its statement timeout. Here the
reader stays open while the store opens; the old bank's reads must get through within
about the migration's lock timeout, and the migration must complete once the reader ends.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, postgres, schema
from tests.gateway.ledger.ledger_support import PgCluster

# The migration's lowered lock timeout and pause, and the old bank's statement timeout:
# ten lock timeouts, so a read that waits for the migration's request until the reader
# ends fails, and one that waits no longer than the lock timeout does not.
LOCK_TIMEOUT_MS = 200
PAUSE_SECONDS = 0.1
OLD_BANK_TIMEOUT_MS = 10 * LOCK_TIMEOUT_MS
# The old bank's read may wait the rest of one lock timeout, and a little for the server.
MOST_WAIT_SECONDS = 2 * LOCK_TIMEOUT_MS / 1000
# How many reads of the old bank, one after the other, while the migration keeps trying.
READS = 5
# How long the test waits for the migration to queue on the table, or to end.
PATIENCE_SECONDS = 30.0


def _waiting_locks(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'transfers'::regclass"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _old_bank_read(conninfo: str) -> float:
    """One read of the old bank on ``transfers``, with its statement timeout; its time."""
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(f"SELECT set_config('statement_timeout', '{OLD_BANK_TIMEOUT_MS}', true)")
        started = time.monotonic()
        conn.execute("SELECT count(*) FROM transfers WHERE hold_id = 'h'").fetchone()
        return time.monotonic() - started


def test_a_migration_gives_way_to_a_long_reader_and_completes_after_it(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conninfo = pg_cluster.new_schema()
    with monkeypatch.context() as earlier:  # the earlier release: schema version 5
        earlier.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
        earlier.setattr(schema, "SCHEMA_VERSION", 5)
        PostgresLedgerStore(conninfo).close()
    # raising=False: the release before this fix had no such limits, and this test shows
    # what its migration did.
    monkeypatch.setattr(postgres, "MIGRATION_LOCK_TIMEOUT_MS", LOCK_TIMEOUT_MS, raising=False)
    monkeypatch.setattr(postgres, "MIGRATION_RETRY_PAUSE_SECONDS", PAUSE_SECONDS, raising=False)
    opened: list[PostgresLedgerStore | BaseException] = []

    def open_store() -> None:
        try:
            opened.append(PostgresLedgerStore(conninfo))
        except BaseException as exc:  # reported by the assertion below
            opened.append(exc)

    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    reader = psycopg.connect(conninfo)  # a report: ACCESS SHARE until its transaction ends
    try:
        reader.execute("SELECT count(*) FROM transfers").fetchone()
        opener = threading.Thread(target=open_store, daemon=True)
        opener.start()
        deadline = time.monotonic() + PATIENCE_SECONDS
        while not _waiting_locks(conninfo):  # the migration's request queues on the table
            assert time.monotonic() < deadline, "the migration never asked for the lock"
        waits = [_old_bank_read(conninfo) for _ in range(READS)]
        assert max(waits) < MOST_WAIT_SECONDS, waits
        assert not opened, "the migration completed while the reader held the table"
    finally:
        reader.rollback()
        reader.close()
    opener.join(PATIENCE_SECONDS)
    (store,) = opened
    assert isinstance(store, PostgresLedgerStore), store
    try:
        row = store.read(lambda tx: tx.one("SELECT version FROM schema_version"))
        assert row is not None and row["version"] == schema.SCHEMA_VERSION == 6
    finally:
        store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
    assert said, "the migration waited in silence"
    assert "table transfers" in said[0] and "55P03" in said[0], said
    assert len(said) == 1, said  # once, not at every try
