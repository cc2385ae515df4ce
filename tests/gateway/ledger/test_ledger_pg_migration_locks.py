"""A PostgreSQL migration gives way to the transactions on a table it must lock.

A report or a pg_dump keeps ACCESS SHARE on ``transfers`` for as long as it reads. Version
6's DROP INDEX needs ACCESS EXCLUSIVE there; waiting for it without a limit, its request
would queue every statement of the earlier release's bank, still serving, on
``transfers`` behind the reader, until each failed at its statement timeout. Here the
reader stays open while the store opens; the old bank's reads must get through within
about the migration's lock timeout, and the migration must complete once the reader ends.

Giving way rolls back only the version that gave way: an upgrade over several versions
keeps the ones it finished, so version 4's index builds, and their locks on the tables the
old bank writes, are not redone at every try. And the wait for the migration's advisory
lock (another host migrating) is not cut short by a role's or database's lock timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, postgres_migration, schema
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
# The old bank's writes on ``requests`` (a table version 4 indexes) while the upgrade waits.
WRITES = 5
# A sequence the test's version 4 advances each time it runs: a sequence is not
# transactional, so a run rolled back still counts.
VERSION_4_RUNS = "version_4_runs"
# A lock timeout of the ledger's role (a DBA's default), shorter than the wait for another
# host's migration; that wait must outlast it this many times over.
ROLE_LOCK_TIMEOUT_MS = 100
ROLE_TIMEOUTS_OUTLASTED = 3
# The requests for a lock on ``transfers`` that wait, in pg_locks.
WAITING_ON_TRANSFERS = "FROM pg_locks WHERE NOT granted AND relation = 'transfers'::regclass"


def _lower_the_migrations_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_migration, "MIGRATION_LOCK_TIMEOUT_MS", LOCK_TIMEOUT_MS)
    monkeypatch.setattr(postgres_migration, "MIGRATION_RETRY_PAUSE_SECONDS", PAUSE_SECONDS)


def _at_version(conninfo: str, version: int) -> None:
    """A ledger as the release of schema ``version`` created it."""
    with pytest.MonkeyPatch.context() as earlier:
        earlier.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        earlier.setattr(schema, "SCHEMA_VERSION", version)
        PostgresLedgerStore(conninfo).close()


def _read_one(conninfo: str, query: LiteralString) -> Any:
    """The one value ``query`` reads, in a session of its own (as another session sees it)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def _version(conninfo: str) -> int:
    """The schema version committed, as another session sees it."""
    return int(_read_one(conninfo, "SELECT version FROM schema_version"))


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the ledger logged (the migration's warnings)."""
    return [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]


class _Opening:
    """The store opening (so migrating) in a thread, started: into ``opened`` goes the
    store or what it raised; at ``deadline`` the test stops waiting for the migration."""

    def __init__(self, conninfo: str) -> None:
        self.opened: list[PostgresLedgerStore | BaseException] = []
        self._thread = threading.Thread(target=self._open, args=(conninfo,), daemon=True)
        self._thread.start()
        self.deadline = time.monotonic() + PATIENCE_SECONDS

    def _open(self, conninfo: str) -> None:
        try:
            self.opened.append(PostgresLedgerStore(conninfo))
        except BaseException as exc:  # reported by store()'s assertion
            self.opened.append(exc)

    def store(self) -> PostgresLedgerStore:
        """The store opened, once the thread has ended (waited for within the patience)."""
        self._thread.join(PATIENCE_SECONDS)
        (store,) = self.opened
        assert isinstance(store, PostgresLedgerStore), store
        return store


@contextmanager
def _a_report_reading_transfers(conninfo: str) -> Iterator[None]:
    """A report: ACCESS SHARE on ``transfers`` until its transaction ends with the block."""
    reader = psycopg.connect(conninfo)
    try:
        reader.execute("SELECT count(*) FROM transfers").fetchone()
        yield
    finally:
        reader.rollback()
        reader.close()


def _waiting_locks(conninfo: str) -> int:
    return int(_read_one(conninfo, f"SELECT count(*) {WAITING_ON_TRANSFERS}"))


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
    _at_version(conninfo, 5)  # the earlier release
    _lower_the_migrations_limits(monkeypatch)
    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    with _a_report_reading_transfers(conninfo):
        opening = _Opening(conninfo)
        while not _waiting_locks(conninfo):  # the migration's request queues on the table
            assert time.monotonic() < opening.deadline, "the migration never asked for the lock"
        waits = [_old_bank_read(conninfo) for _ in range(READS)]
        assert max(waits) < MOST_WAIT_SECONDS, waits
        assert not opening.opened, "the migration completed while the reader held the table"
    store = opening.store()
    try:
        row = store.read(lambda tx: tx.one("SELECT version FROM schema_version"))
        assert row is not None and row["version"] == schema.SCHEMA_VERSION == 8
    finally:
        store.close()
    said = _said(caplog)
    assert said, "the migration waited in silence"
    assert "table transfers" in said[0] and "55P03" in said[0], said
    assert len(said) == 1, said  # once, not at every try


def _wait_on_transfers_since(conninfo: str) -> object:
    """When the wait for a lock on ``transfers`` began (None: nobody waits)."""
    return _read_one(conninfo, f"SELECT min(waitstart) {WAITING_ON_TRANSFERS}")


def _old_bank_write(conninfo: str, n: int) -> float:
    """One write of the old bank on ``requests`` (a request decided), with its statement
    timeout; its time."""
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(f"SELECT set_config('statement_timeout', '{OLD_BANK_TIMEOUT_MS}', true)")
        started = time.monotonic()
        conn.execute(
            "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
            " VALUES (%s, %s, %s, 0)",
            (n.to_bytes(16, "big"), b"\x01", b"\x02"),
        )
        return time.monotonic() - started


def test_an_upgrade_keeps_the_versions_it_finished_while_a_later_one_gives_way(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, 3 -> 6 ran in one transaction: version 4 built its indexes (SHARE on
    # requests and transfers, blocking the old bank's writes), version 6 gave way behind
    # the reader, everything rolled back, and the next try built the indexes again.
    conninfo = pg_cluster.new_schema()
    _at_version(conninfo, 3)  # the release before retention: version 4 still to apply
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE {VERSION_4_RUNS}")
    counted = (*schema.MIGRATIONS[3], f"SELECT nextval('{VERSION_4_RUNS}')")
    monkeypatch.setattr(
        schema, "MIGRATIONS", (*schema.MIGRATIONS[:3], counted, *schema.MIGRATIONS[4:])
    )
    _lower_the_migrations_limits(monkeypatch)
    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    with _a_report_reading_transfers(conninfo):
        opening = _Opening(conninfo)
        while (first_wait := _wait_on_transfers_since(conninfo)) is None:
            assert time.monotonic() < opening.deadline, "the migration never asked for the lock"
        # Version 6 waits for the reader; 4 and 5 are committed already.
        assert _version(conninfo) == 5
        waits = [_old_bank_write(conninfo, n) for n in range(WRITES)]
        assert max(waits) < MOST_WAIT_SECONDS, waits
        # The migration gives way and asks again (a wait begun later), still at 5.
        while _wait_on_transfers_since(conninfo) in (None, first_wait):
            assert time.monotonic() < opening.deadline, "the migration never tried again"
        assert _version(conninfo) == 5
        assert not opening.opened, "the migration completed while the reader held the table"
    opening.store().close()
    assert _version(conninfo) == schema.SCHEMA_VERSION == 8
    with psycopg.connect(conninfo, autocommit=True) as conn:
        runs = conn.execute(f"SELECT last_value, is_called FROM {VERSION_4_RUNS}").fetchone()
    assert runs == (1, True), f"version 4 ran {runs[0] if runs and runs[1] else 0} times"
    said = _said(caplog)
    assert len(said) == 1 and "table transfers" in said[0], said


def _advisory_wait_seconds(conninfo: str) -> float:
    """How long the longest wait for an advisory lock has lasted so far (0: none)."""
    return float(
        _read_one(
            conninfo,
            "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(waitstart)), 0)"
            " FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
    )


def test_a_lock_timeout_of_the_role_does_not_cut_short_the_wait_for_the_migration_lock(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, the role's lock timeout ended the wait for the advisory lock (55P03 before
    # any statement of the migration ran): it rolled back, blamed "table (the one ''
    # locks)" and tried again, at every try.
    conninfo = pg_cluster.new_schema({"lock_timeout": str(ROLE_LOCK_TIMEOUT_MS)})
    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    outlast = ROLE_TIMEOUTS_OUTLASTED * ROLE_LOCK_TIMEOUT_MS / 1000
    with psycopg.connect(conninfo, autocommit=True) as other, other.transaction():
        # Another host migrating: it holds the migration lock.
        other.execute("SELECT pg_advisory_xact_lock(%s)", (postgres_migration.MIGRATION_LOCK_KEY,))
        opening = _Opening(conninfo)
        while _advisory_wait_seconds(conninfo) < outlast:  # one wait, not one per try
            assert time.monotonic() < opening.deadline, (
                "the wait for the migration lock was cut short"
            )
        assert not opening.opened
    opening.store().close()
    assert _version(conninfo) == schema.SCHEMA_VERSION
    said = _said(caplog)
    assert not said, said
