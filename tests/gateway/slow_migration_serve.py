"""``setpay gateway serve`` whose ledger migration holds its lock (SQLite's write lock,
PostgreSQL's advisory lock) for seconds, as building the indexes of a ledger of many
millions of rows does.

Run as ``python -m tests.gateway.slow_migration_serve SETPAY-ARGS...``. A store that
migrates its schema here keeps the migration's transaction, and so the lock, open
MIGRATION_SECONDS longer; a store that finds its schema current is not slowed. The change
is made in this process before the supervisor forks, so it holds in whichever process
migrates: the supervisor, a worker or the ledger process. A child must serve within
START_SECONDS of its fork, less than the migration takes, as the minutes of a big
ledger's migration are more than ``WORKER_START_SECONDS``. Every SQLite ledger store
waits BUSY_TIMEOUT_MS for a lock, not the bank's 5 s, so that a migration outlasting it
takes seconds, not ten. Everything else is the bank's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from cli.main import main as setpay
from gateway import child_deadlines, issuer, ledger_process
from gateway.ledger import postgres_migration, sqlite
from gateway.ledger.schema import SCHEMA_VERSION, Dialect, migrate, migrate_next
from gateway.ledger.sqlite import SqliteLedgerStore, SqliteStoreConfig
from gateway.ledger.store import CommitObserver, Transaction

# Each SQLite store's wait for a lock (``sqlite.BUSY_TIMEOUT_MS`` in the bank).
BUSY_TIMEOUT_MS = 2000
BRIEF = SqliteStoreConfig(busy_timeout_ms=BUSY_TIMEOUT_MS)
# Twice the busy timeout: a worker that waits for the lock gives up after one, even if it
# began waiting up to one busy timeout after the migration took the lock (workers load
# their keys and PKI first, at their own pace on a loaded machine).
MIGRATION_SECONDS = 2 * BUSY_TIMEOUT_MS / 1000
# Shorter than the migration; still many times the 0.2-1 s a child takes to start here
# on a loaded machine.
START_SECONDS = 0.75 * MIGRATION_SECONDS


def _brief_store(
    path: str | os.PathLike[str],
    config: SqliteStoreConfig | None = None,
    observer: CommitObserver | None = None,
    **options: Any,
) -> SqliteLedgerStore:
    return SqliteLedgerStore(path, config or BRIEF, observer, **options)


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv``, every migration slowed, every start
    allowed START_SECONDS."""

    def slow_migrate(tx: Transaction, dialect: Dialect) -> int:
        found = migrate(tx, dialect)
        if found < SCHEMA_VERSION:
            time.sleep(MIGRATION_SECONDS)
        return found

    def slow_migrate_next(tx: Transaction, dialect: Dialect) -> int:
        found = migrate_next(tx, dialect)
        if found == SCHEMA_VERSION - 1:  # PostgreSQL's transaction of the last version
            time.sleep(MIGRATION_SECONDS)
        return found

    # What each store calls (it imported the name).
    sqlite.migrate = slow_migrate  # type: ignore[attr-defined]
    postgres_migration.migrate_next = slow_migrate_next  # type: ignore[attr-defined]
    # Where the workers' (or the supervisor's) and the ledger process's stores are opened.
    issuer.SqliteLedgerStore = _brief_store  # type: ignore[attr-defined,assignment]
    ledger_process.SqliteLedgerStore = _brief_store  # type: ignore[attr-defined,assignment]
    child_deadlines.WORKER_START_SECONDS = START_SECONDS
    return setpay(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
