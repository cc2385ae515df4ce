"""Ledger stores and the worker's turn to compute (``gateway.cpu_turn``)."""

from __future__ import annotations

import threading

from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import PgCluster, postgres_backend

WAIT = 5.0


def test_a_postgres_operation_leaves_the_turn_to_other_requests(pg_cluster: PgCluster) -> None:
    # A request holding the turn runs a PostgreSQL operation that takes a while (network
    # round trips, a lock held by another host): meanwhile another request of the same
    # worker must be able to compute.
    store = postgres_backend(pg_cluster.new_schema()).open_store()
    inside = threading.Event()
    other_computed = threading.Event()
    outcome: list[object] = []

    def slow_operation(tx: Transaction) -> bool:
        tx.one("SELECT 1 AS one")
        inside.set()
        return other_computed.wait(WAIT)

    def request() -> None:
        with PROCESS_TURN.held():
            outcome.append(store.execute(slow_operation))

    def other_request() -> None:
        with PROCESS_TURN.held():
            other_computed.set()

    first = threading.Thread(target=request)
    first.start()
    assert inside.wait(WAIT)
    second = threading.Thread(target=other_request)
    second.start()
    second.join(WAIT)
    first.join(WAIT)
    store.close()
    assert other_computed.is_set()
    assert outcome == [True]  # the operation saw the other request compute, then committed
