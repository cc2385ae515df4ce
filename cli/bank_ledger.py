"""The bank's ledger as the ``setpay bank`` commands that need no keys open it
(``show-batch``, ``check-books``, ``show-unanswered``, ``settle-unanswered``), and the
times they show.

Such a command opens the ledger's store alone, never the key backend (no PAN is read),
and never makes, migrates or locks a ledger: it reads it ``read_only`` first, which
refuses one at another schema version than this release's (``SchemaError``), and a
SQLite ledger file that is not there is said here, naming it, where SQLite would not.
One opening of the store for them all, so that no command of them can make an empty
ledger where another refuses to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.config import BankConfig
from gateway.ledger import LedgerStore, PostgresLedgerStore, SqliteLedgerStore


class NoLedger(Exception):
    """The SQLite ledger file the configuration names is not there: nothing read, and
    none made."""


def open_existing_store(config: BankConfig, *, read_only: bool = True) -> LedgerStore:
    """The ledger's store; ``read_only``: its reads alone, of a ledger at this release's
    schema version (SchemaError otherwise, nothing made or migrated: opened for writing,
    an empty one would be made, its books balancing, or an older one migrated). Written,
    it is to be opened only after such a read, so that it migrates nothing either.
    NoLedger where the SQLite file is not there."""
    url = config.ledger_url()
    if not url.startswith("sqlite:"):
        return PostgresLedgerStore(url, read_only=read_only)
    path = Path(url[len("sqlite:") :])
    if not path.is_file():  # said here: SQLite's CANTOPEN would not name the file
        raise NoLedger(
            f"no ledger at {path} (ledger.store, or SETPAY_LEDGER): nothing to read, and"
            " this command makes none"
        )
    return SqliteLedgerStore(path, read_only=read_only)


def utc(ms: int) -> str:
    """A Unix-milliseconds time for people, in UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
