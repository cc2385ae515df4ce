"""The merchant's own database: offers, orders, authorizations, settlement operations, batches.

One SQLite file (``clients.merchant.database``: durable, shared by the merchant's
processes). The tables, their version and how a row becomes a record are
``clients.merchant.schema``'s; the transactions over them live by domain:
``order_store`` (offers, orders and their authorization), ``settlement_store``
(settlement operations and batch changes) and ``gateway_pin`` (the gateway answers are
taken from). ``MerchantStore`` is all three, and what spans them.

Every request that may change something at the gateway (an authorization, a capture, a
batch close; not a query) is stored, as the exact bytes sent, *before* it is sent:
after a crash the same bytes go out again, and the gateway's RRPID idempotency answers
with the response it already committed (to two senders at once, too: it is saved once,
``request_rows``). The PI is kept byte for byte, sealed to the gateway; the capture
token likewise. The merchant never holds a PAN, so none is here.

``WaitingRequests`` counts the requests still waiting for a final answer, by kind, for
the merchant's metrics: on a read-only connection of its own, so that a scrape never
waits for the merchant's lock nor holds it.

Errors: ``sqlite3`` failures become ``StoreError``; unknown keys ``UnknownOrder``; a
change the order's state forbids, ``OrderStateError``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from clients.errors import StoreError
from clients.merchant.database import BUSY_TIMEOUT_MS
from clients.merchant.gateway_pin import GatewayPinStore
from clients.merchant.order_store import OrderStore
from clients.merchant.records import BatchRequest, Operation, OperationState, Order, OrderState
from clients.merchant.schema import SENT_ONLY
from clients.merchant.settlement_store import SettlementStore

# Where each kind of request waits for its answer: its table, its waiting state.
_WAITING: dict[type, tuple[str, str]] = {
    Order: ("orders", OrderState.AUTHORIZING.value),
    Operation: ("operations", OperationState.SENT.value),
    BatchRequest: ("batch_requests", OperationState.SENT.value),
}


def _waiting(request: Order | Operation | BatchRequest) -> tuple[str, str, tuple[object, ...]]:
    """The table of ``request``, and the condition and values that find its stored bytes
    still waiting: an operation or batch change by its RRPID; an order by its XID and
    the AuthReq it holds (``auth_rrpid``), so that a sender of one since replaced by an
    AuthReq built afresh never counts on the new one, which nobody answered."""
    table, state = _WAITING[type(request)]
    if isinstance(request, Order):
        return table, "xid = ? AND auth_rrpid IS ? AND state = ?", (
            request.xid, request.auth_rrpid, state,
        )  # fmt: skip
    return table, "rrpid = ? AND state = ?", (request.rrpid, state)


class MerchantStore(OrderStore, SettlementStore, GatewayPinStore):
    """The merchant's records in its SQLite file (thread-safe, as ``Database`` is)."""

    def postpone(
        self,
        request: Order | Operation | BatchRequest,
        unverified: int,
        at_ms: int,
        *,
        unreadable: bool = False,
    ) -> None:
        """A request still waiting (an order authorizing, an operation or a batch change
        sent): ``unverified`` answers in a row did not verify, and background retries
        leave it until ``at_ms`` (``outcome.next_try``); ``unreadable``: one more verified
        answer of a result code this release cannot read came for it. That count only
        grows, in the row itself (never from a copy read before another sender counted
        one): it is what keeps the request from being built afresh. Nothing else of it
        changes."""
        table, where, values = _waiting(request)
        with self._write() as conn:
            conn.execute(
                f"UPDATE {table} SET unverified = ?, retry_after_ms = ?, "  # noqa: S608 - names are ours
                f"unreadable = unreadable + ? WHERE {where}",
                (unverified, at_ms, int(unreadable), *values),
            )

    def unreadable_answers(self, request: Order | Operation | BatchRequest) -> int:
        """How many verified answers of a result code this release cannot read the
        request's stored bytes have had (``postpone``), as the file says now: 0 for one
        no longer waiting."""
        table, where, values = _waiting(request)
        row = self._read(
            lambda conn: conn.execute(
                f"SELECT unreadable FROM {table} WHERE {where}",  # noqa: S608 - names are ours
                values,
            ).fetchone()
        )
        return 0 if row is None else int(row[0])


@dataclass(frozen=True)
class Waiting:
    """How many requests of one kind wait for the gateway's final answer, how many of
    those last had an answer that did not verify (``outcome.next_try``), and how many had
    a verified one of a result code this release cannot read (an upgrade due)."""

    kind: str
    count: int
    unverified: int
    unreadable: int


# One statement for all three tables, read at every scrape: an order waiting is one
# purchased or authorizing (``Authorizer.pending``: its AuthReq not built yet, or sent);
# an operation or a batch change, one sent. Each table's waiting rows are found by an
# index (orders by their state's; operations and batch changes by the partial indexes
# of the sent ones alone, which ``SENT_ONLY`` names), never by reading the table whole.
_WAITING_SQL = f"""
SELECT 'authorization', count(*), count(*) FILTER (WHERE unverified > 0),
       count(*) FILTER (WHERE unreadable > 0)
  FROM orders WHERE state IN (?, ?)
UNION ALL
SELECT kind, count(*), count(*) FILTER (WHERE unverified > 0),
       count(*) FILTER (WHERE unreadable > 0)
  FROM operations WHERE {SENT_ONLY} GROUP BY kind
UNION ALL
SELECT 'batch', count(*), count(*) FILTER (WHERE unverified > 0),
       count(*) FILTER (WHERE unreadable > 0)
  FROM batch_requests WHERE {SENT_ONLY}
"""  # noqa: S608 - constant SQL
_WAITING_STATES = (OrderState.PURCHASED.value, OrderState.AUTHORIZING.value)


class WaitingRequests:
    """Reads, on a read-only connection of its own, how many requests of each kind wait
    for the gateway's final answer (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the merchant database {path}: {exc}") from exc

    def counts(self) -> list[Waiting]:
        """Every kind with requests waiting (a kind with none may be left out)."""
        with self._lock:
            try:
                rows = self._conn.execute(_WAITING_SQL, _WAITING_STATES).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"merchant database read failed: {exc}") from exc
        return [
            Waiting(str(kind), int(count), int(unverified), int(unreadable))
            for kind, count, unverified, unreadable in rows
        ]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
