"""The merchant store's tests' own records: an offer purchased, a batch change, damage;
and the tables a query reads whole."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from clients.merchant.records import BatchRequest, Money, OperationState
from clients.merchant.store import MerchantStore
from setpay.v1 import gateway_admin_pb2

EUR = Money(978, 1250)
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
PURGE = gateway_admin_pb2.BATCH_OPERATION_PURGE


def purchased(store: MerchantStore, lid: bytes = b"lid-1", xid: bytes = b"x" * 32) -> bytes:
    """An offer made, opened and purchased: its order's XID."""
    store.add_offer(lid, b"two books", EUR, "setpay")
    store.open_order(lid, xid, b"trans-ids", b"c" * 32)
    store.record_purchase(xid, b"t" * 32, b"oi-data", b"sealed-pi")
    return xid


def batch_request(rrpid: bytes, operation: int = CLOSE, batch_id: str = "b1") -> BatchRequest:
    """A batch change as ``Batches`` builds it, not stored yet."""
    return BatchRequest(
        rrpid=rrpid, operation=operation, batch_id=batch_id, return_summary=True,
        starting_point=0, maximum_items=5, state=OperationState.SENT, request=b"req",
        request_digest=b"dig", status=0, answer=b"", created_ms=0,
    )  # fmt: skip


def damage(path: Path, statement: str) -> None:
    """Change the file behind the store's back, as a faulty disk or a hand edit would."""
    with sqlite3.connect(path) as conn:
        conn.execute(statement)
    conn.close()


def full_scans(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> list[str]:
    """The steps of ``sql``'s plan that read a table whole, row by row (no index)."""
    plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return [step[3] for step in plan if re.fullmatch(r"SCAN (TABLE )?\w+", step[3])]
