"""A PostgreSQL server restarted or stopped under a store with a full pool of connections.

The cluster here is this module's own: the tests stop and start it, which the session's
cluster, shared by every other test, must never see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, StoreUnavailable
from gateway.ledger.postgres import CONNECT_TIMEOUT_SECONDS, POOL_SIZE
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import PgCluster, insert_probe, throwaway_pg_cluster

# What tells this store's sessions apart in pg_stat_activity.
APPLICATION = "pool-under-restart"
# How long filling the pool may take: every connection held at once, then let go.
FILL_WAIT_SECONDS = 30.0
# A stopped server refuses a connection at once (its socket is gone): the answer must
# come in far less than the connect timeout, which a store waiting for it would reach.
REFUSAL_SECONDS = CONNECT_TIMEOUT_SECONDS / 4


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this module alone, which its tests may stop and start."""
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def store(own_cluster: PgCluster) -> Iterator[PostgresLedgerStore]:
    """A store whose pool holds ``POOL_SIZE`` idle connections, each with a session."""
    conninfo = own_cluster.new_schema() + f" application_name={APPLICATION}"
    store = PostgresLedgerStore(conninfo)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
        _fill_pool(store)
        assert _sessions(own_cluster) == POOL_SIZE
        yield store
    finally:
        store.close()
        if not (own_cluster.data / "postmaster.pid").exists():
            own_cluster.start()


def _fill_pool(store: PostgresLedgerStore) -> None:
    """Hold every connection of the pool at once, then give them back, idle."""
    together = threading.Barrier(POOL_SIZE, timeout=FILL_WAIT_SECONDS)

    def hold(tx: Transaction) -> None:
        together.wait()

    with ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
        for done in [pool.submit(store.read, hold) for _ in range(POOL_SIZE)]:
            done.result(timeout=FILL_WAIT_SECONDS)


def _sessions(cluster: PgCluster) -> int:
    with psycopg.connect(cluster.conninfo("postgres")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _probe_values(tx: Transaction) -> list[int]:
    return [int(r["value"]) for r in tx.all("SELECT value FROM probe ORDER BY value")]


def test_after_a_restart_the_next_operations_are_served(
    own_cluster: PgCluster, store: PostgresLedgerStore
) -> None:
    # Every pooled session ended with the server, which is back before the store's next
    # operation. An idle connection fails at BEGIN, where nothing can have been decided:
    # no request may be answered UNAVAILABLE by a server that is up, on any connection.
    own_cluster.stop()
    own_cluster.start()
    assert store.execute(insert_probe(1)) == 1
    for _ in range(POOL_SIZE):
        assert store.read(_probe_values) == [1]
    assert store.execute(insert_probe(2)) == 2
    assert store.read(_probe_values) == [1, 2]


def test_a_stopped_server_is_unavailable_at_once_and_served_once_back(
    own_cluster: PgCluster, store: PostgresLedgerStore
) -> None:
    own_cluster.stop()
    for operation in (lambda: store.execute(insert_probe(1)), lambda: store.read(_probe_values)):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
            operation()
        assert time.monotonic() - started < REFUSAL_SECONDS
    own_cluster.start()
    assert store.execute(insert_probe(3)) == 3
    assert store.read(_probe_values) == [3]
