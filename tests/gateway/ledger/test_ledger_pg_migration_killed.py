"""A bank killed while its PostgreSQL migration runs a long statement.

PostgreSQL notices that a client is gone only when it next reads from it: a migration
killed mid-statement (``docker stop`` ends an upgrade after its timeout; a start timeout
does) went on running on the server for as long as the statement took, minutes for
version 4's indexes on a big ledger, holding the migration's advisory lock and its
table's lock, so that the still-serving bank's writes to that table waited behind a
migration nobody would ever commit. Now the migration's session checks that its client
is there (``client_connection_check_interval``) and rolls its version back soon after
the kill, as OPERATIONS says it does.

The cluster here is this module's own: until that fix, the killed migration held the
advisory lock that every store of the database takes to open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore
from gateway.ledger.schema import SCHEMA_VERSION
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import PgCluster, throwaway_pg_cluster

# What tells the migrating bank's session apart in pg_stat_activity.
APPLICATION = "killed-migration"
# The next release's migration as the killed bank runs it: an index on ``requests`` (its
# lock holds up the serving bank's inserts there) and then a step that lasts, as a big
# ledger's index build does.
SLOW_STEP_SECONDS = 120
# The killed bank: opening a store that has one schema version more than this code.
MIGRATING_BANK = f"""
import sys
from gateway.ledger import PostgresLedgerStore, schema
schema.MIGRATIONS = (*schema.MIGRATIONS, (
    "CREATE INDEX requests_by_digest ON requests (request_digest)",
    "SELECT pg_sleep({SLOW_STEP_SECONDS})",
))
schema.SCHEMA_VERSION = len(schema.MIGRATIONS)
PostgresLedgerStore(sys.argv[1])
"""
# How long the migrating bank may take to start and reach its slow step.
START_SECONDS = 60.0
# How long after the kill its migration may still run: ten of its checks for the client
# (``postgres_migration.MIGRATION_CLIENT_CHECK_MS``), far less than the step.
GONE_SECONDS = 10.0
# The repository's root, where the migrating bank runs.
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


def _sessions(conninfo: str) -> list[str]:
    """What the migrating bank's sessions are running, if any is left."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        ).fetchall()
    return [str(query) for (query,) in rows]


def _insert_request(tx: Transaction) -> int:
    return tx.run(
        "INSERT INTO requests (rrpid, request_digest, response, created_at_ms)"
        " VALUES (?, ?, ?, ?)",
        os.urandom(32), b"d", b"a", 1,
    )  # fmt: skip


def _version(tx: Transaction) -> object:
    return tx.one("SELECT version FROM schema_version")


def test_a_killed_banks_migration_ends_on_the_server_and_rolls_back(
    own_cluster: PgCluster,
) -> None:
    conninfo = own_cluster.new_schema()
    serving = PostgresLedgerStore(conninfo)  # a bank of this release, serving
    admin = own_cluster.conninfo("postgres")
    migrating = subprocess.Popen(
        [sys.executable, "-c", MIGRATING_BANK, f"{conninfo} application_name={APPLICATION}"],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not any("pg_sleep" in query for query in _sessions(admin)):
            assert migrating.poll() is None, "the migrating bank ended before its slow step"
            assert time.monotonic() < deadline, "the migration never reached its slow step"
            time.sleep(0.1)
        os.kill(migrating.pid, signal.SIGKILL)
        migrating.wait()
        killed = time.monotonic()
        while _sessions(admin):
            assert time.monotonic() - killed < GONE_SECONDS, (
                "the killed bank's migration still runs on the server"
            )
            time.sleep(0.1)
        # Its version rolled back, index and all, and its lock on ``requests`` with it:
        # the serving bank writes there at once.
        assert serving.read(_version) == {"version": SCHEMA_VERSION}
        assert serving.read(
            lambda tx: tx.one("SELECT to_regclass('requests_by_digest') AS found")
        ) == {"found": None}
        started = time.monotonic()
        assert serving.execute(_insert_request) == 1
        assert time.monotonic() - started < GONE_SECONDS
    finally:
        if migrating.poll() is None:
            migrating.kill()
            migrating.wait()
        serving.close()
