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

Errors: ``sqlite3`` failures become ``StoreError``; unknown keys ``UnknownOrder``; a
change the order's state forbids, ``OrderStateError``.
"""

from __future__ import annotations

from clients.merchant.gateway_pin import GatewayPinStore
from clients.merchant.order_store import OrderStore
from clients.merchant.records import BatchRequest, Operation, OperationState, Order, OrderState
from clients.merchant.settlement_store import SettlementStore

# Where each kind of request waits for its answer: its table, its key, its waiting state.
_WAITING: dict[type, tuple[str, str, str]] = {
    Order: ("orders", "xid", OrderState.AUTHORIZING.value),
    Operation: ("operations", "rrpid", OperationState.SENT.value),
    BatchRequest: ("batch_requests", "rrpid", OperationState.SENT.value),
}


class MerchantStore(OrderStore, SettlementStore, GatewayPinStore):
    """The merchant's records in its SQLite file (thread-safe, as ``Database`` is)."""

    def postpone(
        self, request: Order | Operation | BatchRequest, unverified: int, at_ms: int
    ) -> None:
        """A request still waiting (an order authorizing, an operation or a batch change
        sent): ``unverified`` answers in a row did not verify, and background retries
        leave it until ``at_ms`` (``outcome.next_try``). Nothing else of it changes."""
        table, column, state = _WAITING[type(request)]
        key = request.xid if isinstance(request, Order) else request.rrpid
        with self._write() as conn:
            conn.execute(
                f"UPDATE {table} SET unverified = ?, retry_after_ms = ? "  # noqa: S608 - names are ours
                f"WHERE {column} = ? AND state = ?",
                (unverified, at_ms, key, state),
            )
