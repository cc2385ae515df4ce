"""Migrating a PostgreSQL ledger's schema (``schema``) while a bank of the earlier release
still serves on it: one transaction per schema version, each giving way to the
transactions that hold a table it must lock.

- Every transaction takes the advisory lock ``MIGRATION_LOCK_KEY`` first, so hosts opening
  the store at once migrate one after the other; each reads the version anew and applies
  the next missing one (``schema.migrate_next``), with its version bump, and commits.
- No statement timeout: version 4's CREATE INDEX on a ledger of many millions of rows
  takes minutes, and so may the wait for the advisory lock while another host migrates.
  Cancelled at the store's statement timeout, the migration would roll back at every
  start and the store would never open.
- The advisory lock is waited for without a lock timeout (the role's or database's own
  ``lock_timeout`` too is lifted): it is not a table, and waiting for it blocks nobody.
  The tables are waited for ``MIGRATION_LOCK_TIMEOUT_MS`` at a time: waiting without a
  limit, the migration's lock request would queue every statement of the serving bank on
  that table behind a report or a pg_dump, until each failed at its statement timeout.
  Giving way (SQLSTATE 55P03), it rolls back, pauses and tries again.
- A bank killed while its migration runs (an upgrade stopped by ``docker stop`` or a
  start timeout) must not leave the migration running on the server: PostgreSQL notices
  a client gone only when it next reads from it, so a version's index build would go on
  for its minutes with nobody to commit it, holding the advisory lock, which the next
  start waits for, and its table's lock, which holds up the still-serving bank's writes.
  Its session checks every ``MIGRATION_CLIENT_CHECK_MS`` that the client is still there
  (``client_connection_check_interval``, PostgreSQL 14 on) and, if not, ends the
  statement and rolls its version back. An older server goes without, and so does one
  whose platform cannot tell a closed socket (Windows; PostgreSQL 14 outside Linux), which
  refuses the setting (22023): the setting is made in a savepoint, and the migration,
  refused it, goes on without, saying so once.
- A store opened ``read_only`` (an audit) migrates nothing: a schema not current, or no
  ledger at all, is refused (``require_current``, read as ``_is_current`` reads it).
- A schema found current is left alone, read in a READ ONLY snapshot: no lock taken,
  nothing written. The store then opens on a server that refuses writes (a hot standby
  during a failover, ``default_transaction_read_only``), as a serving store rides
  through one: reads are served, writes are UNAVAILABLE (25006) until the server writes
  again. A store whose schema must change still cannot open there.
- Only the version that gave way is rolled back: the versions before it are committed.
  In one transaction for all of them, an upgrade 3 -> 6 would build version 4's indexes
  (SHARE locks that block the serving bank's writes on ``requests``), give way at version
  6's DROP INDEX behind a report, undo the indexes, and build them again at every try:
  the serving bank blocked far longer than the lock timeout at a time.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors

from gateway.ledger import schema
from gateway.ledger.errors import SchemaError, StoreError
from gateway.ledger.schema import POSTGRES, migrate_next
from gateway.ledger.store import Row, Transaction

log = logging.getLogger("setpay.ledger")

# Key of the advisory lock that makes schema migration exclusive across hosts.
MIGRATION_LOCK_KEY = 0x7365_7470_6179_0001  # "setpay" then 0001
# How long a migration statement waits for a table lock before it gives way. Every
# statement of a still-serving bank on that table queues behind the waiting request (its
# ACCESS EXCLUSIVE for DROP INDEX or ALTER TABLE, its SHARE for CREATE INDEX), so this
# bounds their wait, well inside the store's statement timeout (30 s), however long a
# report or a pg_dump keeps the table.
MIGRATION_LOCK_TIMEOUT_MS = 2_000
# Pause before the migration tries again after giving way: the statements that queued
# behind its request run meanwhile.
MIGRATION_RETRY_PAUSE_SECONDS = 1.0
# While the migration keeps giving way, it says so again this often (not at every try).
MIGRATION_WAIT_LOG_SECONDS = 60.0
# How often the migration's session checks that the bank is still connected (the module
# docstring): a killed bank's migration ends within about this long.
MIGRATION_CLIENT_CHECK_MS = 1_000
# The first server version with ``client_connection_check_interval`` (as libpq numbers it).
CLIENT_CHECK_SERVER_VERSION = 140_000

Connection = psycopg.Connection[dict[str, Any]]


class TransactionSource(Protocol):
    """Where the migration's transactions come from (the store's pool)."""

    def __call__(self, *, read_only: bool = False) -> AbstractContextManager[Connection]:
        """A connection inside a transaction, committed when the block ends."""


# What names the table in the migration statements (``schema``) that lock one.
_DROPPED_INDEX = re.compile(r"\s*DROP INDEX (?:IF EXISTS )?(\w+)", re.IGNORECASE)
_LOCKED_TABLE = re.compile(
    r"\b(?:ALTER TABLE|INDEX \w+ ON|INSERT INTO|UPDATE|DELETE FROM|FROM)\s+(\w+)",
    re.IGNORECASE,
)


class _MigrationTransaction(Transaction):
    """A migration's transaction, remembering the statement it runs (to name its table
    when the statement gives way to a lock timeout)."""

    statement = ""

    def __init__(self, inner: Transaction) -> None:
        """Run the statements on ``inner``."""
        self._inner = inner
        self.row_lock = inner.row_lock

    def one(self, sql: str, *params: object) -> Row | None:
        """The first row of a query, or None."""
        self.statement = sql
        return self._inner.one(sql, *params)

    def all(self, sql: str, *params: object) -> list[Row]:
        """Every row of a query."""
        self.statement = sql
        return self._inner.all(sql, *params)

    def run(self, sql: str, *params: object) -> int:
        """Execute a statement; return the number of rows it changed."""
        self.statement = sql
        return self._inner.run(sql, *params)


def migrate_schema(
    transaction: TransactionSource, wrap: Callable[[Connection], Transaction]
) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, one committed transaction per version,
    each tried again while it gives way to the transactions on a table it must lock;
    ``wrap``: the ledger rules' view of a connection inside a transaction."""
    if _is_current(transaction):
        return
    waiting_since: float | None = None
    said_at = 0.0
    client_checked = True  # until the server refuses to (the module docstring)
    while True:
        tx: _MigrationTransaction | None = None
        try:
            with transaction() as conn:
                # SET LOCAL: each ends with this transaction (the module docstring).
                conn.execute("SET LOCAL statement_timeout = 0")
                conn.execute("SET LOCAL lock_timeout = 0")
                if client_checked and conn.info.server_version >= CLIENT_CHECK_SERVER_VERSION:
                    client_checked = _check_client(conn)
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                conn.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_LOCK_TIMEOUT_MS)}")
                tx = _MigrationTransaction(wrap(conn))
                found = migrate_next(tx, POSTGRES)
            # It applied the last version, or found none missing (read when called: a
            # test's schema may have other versions).
            if found >= schema.SCHEMA_VERSION - 1:
                return
            waiting_since = None  # a version committed: a later wait is a new one
        except pg_errors.LockNotAvailable:
            now = time.monotonic()
            if waiting_since is None or now - said_at >= MIGRATION_WAIT_LOG_SECONDS:
                waiting_since = now if waiting_since is None else waiting_since
                said_at = now
                log.warning(
                    "the ledger migration waits for the transactions on table %s to end"
                    " (a report, a dump?): its lock timed out (SQLSTATE 55P03), %.0f s"
                    " so far; it tries again every few seconds",
                    _locked_table(transaction, tx.statement if tx else ""),
                    now - waiting_since,
                )
            time.sleep(MIGRATION_RETRY_PAUSE_SECONDS)


def _check_client(conn: Connection) -> bool:
    """Have the migration's session check that its client is there (the module
    docstring); False, said once, where the server's platform cannot."""
    try:
        with conn.transaction():  # a savepoint: a refusal must not end the migration's
            conn.execute(
                f"SET LOCAL client_connection_check_interval = {int(MIGRATION_CLIENT_CHECK_MS)}"
            )
    except pg_errors.InvalidParameterValue:
        log.warning(
            "the ledger migration goes on without checking that the bank stays connected:"
            " the server cannot check on its platform (SQLSTATE 22023); a bank killed"
            " while it migrates leaves the statement running on the server until it ends"
        )
        return False
    return True


def _is_current(transaction: TransactionSource) -> bool:
    """Whether the schema is at ``SCHEMA_VERSION`` already, as ``schema.current_version``
    would find it (the ``schema_version`` of the schema that CREATE TABLE writes to), read
    without writing anything; False for anything else, which the migration then sorts
    out (another program's tables, a damaged or newer record)."""
    rows = _recorded_versions(transaction)
    return rows is not None and len(rows) == 1 and rows[0]["version"] == schema.SCHEMA_VERSION


def require_current(transaction: TransactionSource) -> None:
    """SchemaError unless the schema is at ``SCHEMA_VERSION``, read as ``_is_current``
    reads it (nothing written, nothing locked): a store opened ``read_only`` neither
    creates a ledger where there is none nor migrates an older one."""
    rows = _recorded_versions(transaction)
    version = 0 if rows is None else schema.recorded_version(rows)  # None: no table
    if version != schema.SCHEMA_VERSION:
        raise SchemaError(schema.schema_version_refusal(version))


def _recorded_versions(transaction: TransactionSource) -> list[Row] | None:
    """The rows of ``schema_version`` in the schema CREATE TABLE writes to, in a READ
    ONLY snapshot; None where that schema has no such table."""
    with transaction(read_only=True) as conn:
        here = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = 'schema_version'"
            " AND c.relkind = 'r'"
        ).fetchone()
        if here is None:
            return None
        return list(conn.execute("SELECT version FROM schema_version").fetchall())


def _locked_table(transaction: TransactionSource, statement: str) -> str:
    """The table ``statement`` (a migration's) locks, as far as its text names it."""
    dropped = _DROPPED_INDEX.match(statement)
    if dropped:
        with contextlib.suppress(psycopg.Error, StoreError):
            with transaction(read_only=True) as conn:
                row = conn.execute(
                    "SELECT tablename FROM pg_indexes"
                    " WHERE indexname = %s AND schemaname = current_schema()",
                    (dropped.group(1),),
                ).fetchone()
            if row is not None:
                return str(row["tablename"])
    named = _LOCKED_TABLE.search(statement)
    head = statement.strip().partition("\n")[0][:60]
    return named.group(1) if named else f"(the one {head!r} locks)"
