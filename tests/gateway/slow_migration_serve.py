"""``setpay gateway serve`` whose ledger migration holds its lock (SQLite's write lock,
PostgreSQL's advisory lock) for seconds, as building the indexes of a ledger of many
millions of rows does.

Run as ``python -m tests.gateway.slow_migration_serve SETPAY-ARGS...``. A store that
migrates its schema here keeps the migration's transaction, and so the lock, open
MIGRATION_SECONDS longer; a store that finds its schema current is not slowed. The change
is made in this process before the supervisor forks, so it holds in whichever process
migrates: the supervisor, a worker or the ledger process. A child must serve within
START_SECONDS of its fork, less than the migration takes, as the minutes of a big
ledger's migration are more than ``WORKER_START_SECONDS``. Everything else is the bank's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from cli.main import main as setpay
from gateway import child_deadlines
from gateway.ledger import postgres_migration, sqlite
from gateway.ledger.schema import SCHEMA_VERSION, Dialect, migrate, migrate_next
from gateway.ledger.store import Transaction

# Twice the busy timeout: a worker that waits for the lock gives up after one, even if it
# began waiting up to one busy timeout after the migration took the lock (workers load
# their keys and PKI first, at their own pace on a loaded machine).
MIGRATION_SECONDS = 2 * sqlite.BUSY_TIMEOUT_MS / 1000
# Shorter than the migration; still many times the second or so a child takes to start
# here on a loaded machine.
START_SECONDS = 0.75 * MIGRATION_SECONDS


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
    child_deadlines.WORKER_START_SECONDS = START_SECONDS
    return setpay(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
