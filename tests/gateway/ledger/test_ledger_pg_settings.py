"""What a PostgreSQL transaction of the store runs with, whatever its session was given.

Behind a pooler in transaction mode (PgBouncer), consecutive transactions of one client
connection run on different server sessions, which have only the server's and the
role's defaults: a SET made once per session is not there. ``RESET ALL`` does the same
to the store's own session, and the sessions here start with lax defaults of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.ledger import PostgresLedgerStore, PostgresStoreConfig
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import PgCluster

# Server defaults that would lose a commit in a crash, never time out a wedged statement,
# and make every race a serialization failure.
LAX = {
    "synchronous_commit": "off",
    "statement_timeout": "0",
    "default_transaction_isolation": "serializable",
}
# A statement timeout unlike any default, so that only the store's own can match it.
TIMEOUT_MS = 12_345


def _settings(tx: Transaction) -> tuple[str, str, str]:
    row = tx.one(
        "SELECT current_setting('synchronous_commit') AS sync,"
        " current_setting('statement_timeout') AS timeout,"
        " current_setting('transaction_isolation') AS isolation"
    )
    assert row is not None
    return row["sync"], row["timeout"], row["isolation"]


def _reset_session(tx: Transaction) -> None:
    # Committed, it takes the session back to its defaults: LAX.
    tx.run("RESET ALL")


@pytest.fixture
def store(pg_cluster: PgCluster) -> Iterator[PostgresLedgerStore]:
    """A store on sessions that start with the LAX defaults."""
    store = PostgresLedgerStore(
        pg_cluster.new_schema(settings=LAX), PostgresStoreConfig(statement_timeout_ms=TIMEOUT_MS)
    )
    try:
        yield store
    finally:
        store.close()


def test_each_transaction_commits_synchronously_whatever_its_session_holds(
    store: PostgresLedgerStore,
) -> None:
    # The first round on a new connection; the second after its session lost every SET.
    for _ in range(2):
        assert store.execute(_settings) == ("on", f"{TIMEOUT_MS}ms", "read committed")
        assert store.read(_settings) == ("on", f"{TIMEOUT_MS}ms", "repeatable read")
        store.execute(_reset_session)
