"""The requests still waiting are found by the partial indexes of the sent ones: a resume
round (every ``runtime.RESUME_SECONDS`` while the merchant serves, under the store's
lock) and a batch change's lookup never read the operations or batch changes whole,
request bytes and all. A metrics scrape's count: ``test_store``, with the migration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from clients.merchant.records import OperationKind, OperationState
from clients.merchant.settlement import Settlement
from clients.merchant.store import MerchantStore
from tests.clients.merchant.store_support import EUR, batch_request, full_scans, purchased

T = TypeVar("T")


def _read_with_plans(store: MerchantStore, read: Callable[[], T]) -> tuple[T, list[str]]:
    """What ``read`` returns, and the tables its SELECTs read whole."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        result = read()
    finally:
        store._conn.set_trace_callback(None)
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert selects  # the trace saw the reads (their parameters written in)
    return result, [scan for sql in selects for scan in full_scans(store._conn, sql)]


def test_resume_reads_only_the_operations_sent(store: MerchantStore) -> None:
    """The operations ``Settlement.resume`` sends again are the sent ones, read by their
    index; the settled ones are not read at all."""
    xid = purchased(store)
    sent = store.add_operation(xid, OperationKind.CAPTURE, b"r" * 32, EUR, b"req", b"dig")
    done = store.add_operation(xid, OperationKind.CREDIT, b"s" * 32, EUR, b"req", b"dig")
    store.settle_operation(done.rrpid, True, 1, 1250)
    # Nothing is sent: resume's reading of what waits needs no gateway, key or credentials.
    settlement = Settlement(store, None, None, None, "merchant")  # type: ignore[arg-type]
    waiting, scans = _read_with_plans(store, settlement._unanswered)
    assert [op.rrpid for op in waiting] == [sent.rrpid]
    assert scans == []


def test_batch_changes_waiting_are_read_by_their_index(store: MerchantStore) -> None:
    """Resume's list of the batch changes sent, and the lookup that keeps a second change
    of the same batch from being stored, read the sent ones alone."""
    first = store.add_batch_request(batch_request(b"q" * 32))
    store.settle_batch_request(first.rrpid, True, 0, b"", "b1", True)
    sent = store.add_batch_request(batch_request(b"p" * 32, batch_id="b2"))
    waiting, scans = _read_with_plans(store, lambda: store.batch_requests(OperationState.SENT))
    assert (waiting, scans) == ([sent], [])
    second = batch_request(b"o" * 32, batch_id="b2")
    again, scans = _read_with_plans(store, lambda: store.add_batch_request(second))
    assert (again, scans) == (sent, [])
