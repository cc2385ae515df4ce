"""``setpay gateway serve`` whose SQLite ledger waits for its write lock as long as a test
holds it.

Run as ``python -m tests.gateway.patient_ledger_serve SETPAY-ARGS...``. The workers and
the ledger process, if the bank has one, are forked from this process, so each one's ledger
store is opened with LOCK_WAIT_SECONDS as its busy timeout and its commit wait, instead of
the bank's 5 s and 30 s
(``gateway.ledger.sqlite.BUSY_TIMEOUT_MS``, ``group_commit.SUBMIT_TIMEOUT_SECONDS``): a
call waiting for the lock a test holds stays in flight until the test lets go, however
loaded the machine, and never runs into a timeout of its own (StoreUnavailable, an ERROR
in the log). Everything else is the bank's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from cli.main import main as setpay
from gateway import issuer, ledger_process
from gateway.ledger.group_commit import GroupCommitConfig
from gateway.ledger.sqlite import SqliteLedgerStore, SqliteStoreConfig
from gateway.ledger.store import CommitObserver

# Far longer than any test holds the lock; a test that never lets go still ends.
LOCK_WAIT_SECONDS = 300.0
PATIENT = SqliteStoreConfig(
    group_commit=GroupCommitConfig(submit_timeout_seconds=LOCK_WAIT_SECONDS),
    busy_timeout_ms=int(LOCK_WAIT_SECONDS * 1000),
)


def _patient_store(
    path: str | os.PathLike[str], observer: CommitObserver | None = None, **options: Any
) -> SqliteLedgerStore:
    return SqliteLedgerStore(path, PATIENT, observer, **options)


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv``, every SQLite ledger store patient."""
    issuer.SqliteLedgerStore = _patient_store  # type: ignore[attr-defined,assignment]
    ledger_process.SqliteLedgerStore = _patient_store  # type: ignore[attr-defined,assignment]
    return setpay(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
