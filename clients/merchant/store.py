"""The merchant's own database: offers, orders, authorizations, settlement operations, batches.

One SQLite file (``clients.merchant.database``: durable, shared by the merchant's
processes). The tables, their version and how a row becomes a record are
``clients.merchant.schema``'s; this module holds the transactions over them.

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

import sqlite3
from collections.abc import Sequence

from clients.errors import OrderStateError, UnknownOrder
from clients.merchant import request_rows
from clients.merchant.database import Database, now_ms
from clients.merchant.offers import check_offer
from clients.merchant.records import (
    Authorization,
    BatchRequest,
    Money,
    Offer,
    Operation,
    OperationKind,
    OperationState,
    Order,
    OrderState,
    short,
)
from clients.merchant.schema import (
    BATCH_REQUEST_COLUMNS,
    OPERATION_COLUMNS,
    ORDER_COLUMNS,
    ORDER_FROM,
    batch_request_from_row,
    operation_from_row,
    order_from_row,
)

# Listings are for people; a page larger than this is not read by anyone.
MAX_LISTED_ORDERS = 1000
# Where each kind of request waits for its answer: its table, its key, its waiting state.
_WAITING: dict[type, tuple[str, str, str]] = {
    Order: ("orders", "xid", OrderState.AUTHORIZING.value),
    Operation: ("operations", "rrpid", OperationState.SENT.value),
    BatchRequest: ("batch_requests", "rrpid", OperationState.SENT.value),
}


class MerchantStore(Database):
    """The merchant's records in its SQLite file (thread-safe, as ``Database`` is)."""

    # -- offers -----------------------------------------------------------------------

    def add_offer(self, lid_m: bytes, description: bytes, amount: Money, brand_id: str) -> Offer:
        """Record an order agreed out of band, known by its LID-M; ``ConfigError`` for one
        no purchase could complete (``offers``)."""
        check_offer(lid_m, description, amount)
        now = now_ms()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM offers WHERE lid_m = ?", (lid_m,)).fetchone():
                raise OrderStateError(f"an offer with LID-M {short(lid_m)} exists")
            conn.execute(
                "INSERT INTO offers VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (lid_m, description, amount.currency, amount.minor, amount.exp10, brand_id, now),
            )
        return Offer(lid_m, description, amount, brand_id, now, None)

    def offer(self, lid_m: bytes) -> Offer:
        """The offer with this LID-M; ``UnknownOrder`` if none."""
        row = self._read(
            lambda c: c.execute(
                "SELECT lid_m, description, currency, amount, exp10, brand_id, created_ms, xid "
                "FROM offers WHERE lid_m = ?",
                (lid_m,),
            ).fetchone()
        )
        if row is None:
            raise UnknownOrder("no offer with this LID-M")
        lid, description, currency, amount, exp10, brand_id, created, xid = row
        return Offer(lid, description, Money(currency, amount, exp10), brand_id, created, xid)

    # -- orders -----------------------------------------------------------------------

    def open_order(self, lid_m: bytes, xid: bytes, trans_ids: bytes, chall_m: bytes) -> Order:
        """PInit answered: the offer becomes an order under a fresh XID.

        A wallet that repeats PInit before purchasing gets a new XID; the unused order
        it replaces is dropped. An offer already purchased is not offered again.
        """
        now = now_ms()
        with self._write() as conn:
            row = conn.execute("SELECT xid FROM offers WHERE lid_m = ?", (lid_m,)).fetchone()
            if row is None:
                raise UnknownOrder("no offer with this LID-M")
            if row[0] is not None:
                state = conn.execute("SELECT state FROM orders WHERE xid = ?", (row[0],)).fetchone()
                if state is not None and state[0] != OrderState.INITIATED:
                    raise OrderStateError(f"offer {short(lid_m)} is already purchased")
                conn.execute("DELETE FROM orders WHERE xid = ?", (row[0],))
            conn.execute(
                "INSERT INTO orders (xid, lid_m, trans_ids, chall_m, state, created_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (xid, lid_m, trans_ids, chall_m, OrderState.INITIATED.value, now, now),
            )
            conn.execute("UPDATE offers SET xid = ? WHERE lid_m = ?", (xid, lid_m))
        return self.order(xid)

    def order(self, xid: bytes) -> Order:
        """The order with this XID; ``UnknownOrder`` if none."""
        row = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} WHERE o.xid = ?",  # noqa: S608 - constant SQL
                (xid,),
            ).fetchone()
        )
        if row is None:
            raise UnknownOrder("no order with this XID")
        return order_from_row(row)

    def find_order(self, prefix: str) -> Order:
        """The order whose XID starts with the hex ``prefix`` (as listings show it)."""
        try:
            wanted = bytes.fromhex(prefix if len(prefix) % 2 == 0 else prefix[:-1])
        except ValueError:
            raise UnknownOrder("an order id is hexadecimal") from None
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                "WHERE substr(o.xid, 1, ?) = ?",
                (len(wanted), wanted),
            ).fetchall()
        )
        matches = [o for r in rows if (o := order_from_row(r)).xid.hex().startswith(prefix.lower())]
        if len(matches) != 1:
            raise UnknownOrder(
                "no order with this id" if not matches else "the id is ambiguous: give more digits"
            )
        return matches[0]

    def orders(self, limit: int = MAX_LISTED_ORDERS) -> list[Order]:
        """The most recent orders, newest first."""
        limit = max(1, min(limit, MAX_LISTED_ORDERS))
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                "ORDER BY o.created_ms DESC, o.xid LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [order_from_row(r) for r in rows]

    def orders_in(self, *states: OrderState) -> list[Order]:
        """Orders in any of ``states``, oldest first (the authorization worker's queue)."""
        marks = ", ".join("?" for _ in states)
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                f"WHERE o.state IN ({marks}) ORDER BY o.created_ms, o.xid",
                tuple(s.value for s in states),
            ).fetchall()
        )
        return [order_from_row(r) for r in rows]

    def _move(
        self,
        conn: sqlite3.Connection,
        xid: bytes,
        allowed: Sequence[OrderState],
        target: OrderState,
        **columns: object,
    ) -> None:
        row = conn.execute("SELECT state FROM orders WHERE xid = ?", (xid,)).fetchone()
        if row is None:
            raise UnknownOrder("no order with this XID")
        if OrderState(row[0]) not in allowed:
            raise OrderStateError(f"order {short(xid)} is {row[0]}, not {target.value}-able")
        sets = "".join(f", {name} = ?" for name in columns)
        conn.execute(
            f"UPDATE orders SET state = ?, updated_ms = ?{sets} WHERE xid = ?",  # noqa: S608 - names are ours
            (target.value, now_ms(), *columns.values(), xid),
        )

    def record_purchase(
        self, xid: bytes, cardholder_thumb: bytes, oi_data: bytes, pi: bytes
    ) -> Order:
        """PReq verified: keep OIData, the sealed PI as received and who signed it."""
        with self._write() as conn:
            self._move(
                conn, xid, (OrderState.INITIATED,), OrderState.PURCHASED,
                cardholder_thumb=cardholder_thumb, oi_data=oi_data, pi=pi,
            )  # fmt: skip
        return self.order(xid)

    def record_auth_request(
        self, xid: bytes, rrpid: bytes, request: bytes, request_digest: bytes
    ) -> Order:
        """The AuthReq as it will be sent (and re-sent after a crash)."""
        with self._write() as conn:
            self._move(
                conn, xid, (OrderState.PURCHASED,), OrderState.AUTHORIZING,
                auth_rrpid=rrpid, auth_request=request, auth_request_digest=request_digest,
            )  # fmt: skip
        return self.order(xid)

    def renew_auth_request(
        self, xid: bytes, old_rrpid: bytes, rrpid: bytes, request: bytes, request_digest: bytes
    ) -> Order:
        """The AuthReq ``old_rrpid``, refused as too old, gives way to one built afresh."""
        with self._write() as conn:
            row = conn.execute("SELECT auth_rrpid FROM orders WHERE xid = ?", (xid,)).fetchone()
            if row is not None and row[0] != old_rrpid:
                raise OrderStateError(f"order {short(xid)}: its AuthReq was already replaced")
            self._move(
                conn, xid, (OrderState.AUTHORIZING,), OrderState.AUTHORIZING,
                auth_rrpid=rrpid, auth_request=request, auth_request_digest=request_digest,
            )  # fmt: skip
        return self.order(xid)

    def record_authorization(self, xid: bytes, result: Authorization, approved: bool) -> Order:
        """The gateway's verified AuthRes."""
        target = OrderState.AUTHORIZED if approved else OrderState.DECLINED
        with self._write() as conn:
            self._move(
                conn, xid, (OrderState.AUTHORIZING,), target,
                auth_code=result.auth_code, auth_amount=result.amount.minor,
                approval_code=result.approval_code, auth_res=result.auth_res,
                cap_token=result.cap_token, acq_card_msg=result.acq_card_msg,
            )  # fmt: skip
        return self.order(xid)

    def record_failure(self, xid: bytes, error_code: int) -> Order:
        """The gateway refused the AuthReq with a verified SET Error (``error_code``)."""
        with self._write() as conn:
            self._move(
                conn, xid, (OrderState.AUTHORIZING,), OrderState.FAILED, error_code=error_code
            )
        return self.order(xid)

    # -- settlement operations --------------------------------------------------------

    def add_operation(
        self,
        xid: bytes,
        kind: OperationKind,
        rrpid: bytes,
        amount: Money,
        request: bytes,
        request_digest: bytes,
        original_rrpid: bytes | None = None,
    ) -> Operation:
        """A capture, refund or reversal as it will be sent (stored first, then sent)."""
        with self._write() as conn:
            self._insert(conn, xid, kind, rrpid, amount, request, request_digest, original_rrpid)
        return self.operation(rrpid)

    def renew_operation(
        self, old: Operation, error_code: int, rrpid: bytes, request: bytes, request_digest: bytes
    ) -> Operation:
        """A sent operation the gateway refused with ``error_code`` gives way to the same
        operation built afresh under ``rrpid``: the one ends failed and the other is
        stored to be sent, in one transaction."""
        with self._write() as conn:
            request_rows.end_renewed(conn, "operations", old.rrpid, error_code)
            self._insert(
                conn, old.xid, old.kind, rrpid, old.amount, request, request_digest,
                old.original_rrpid,
            )  # fmt: skip
        return self.operation(rrpid)

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        xid: bytes,
        kind: OperationKind,
        rrpid: bytes,
        amount: Money,
        request: bytes,
        request_digest: bytes,
        original_rrpid: bytes | None,
    ) -> None:
        now = now_ms()
        conn.execute(
            f"INSERT INTO operations ({OPERATION_COLUMNS}, updated_ms) "  # noqa: S608 - constant SQL
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '', ?, 0, 0, 0, ?)",
            (rrpid, xid, kind.value, amount.currency, amount.minor, amount.exp10,
             OperationState.SENT.value, request, request_digest, original_rrpid, now, now),
        )  # fmt: skip

    def fail_operation(self, rrpid: bytes, error_code: int) -> Operation:
        """The gateway refused a sent operation with a verified SET Error (``error_code``)."""
        with self._write() as conn:
            request_rows.end(
                conn, "operations", rrpid, OperationState.FAILED, error_code=error_code
            )
        return self.operation(rrpid)

    def settle_operation(
        self, rrpid: bytes, succeeded: bool, code: int, amount: int, batch_id: str = ""
    ) -> Operation:
        """The gateway's verified answer to an operation."""
        with self._write() as conn:
            self._settle(conn, rrpid, succeeded, code, amount, batch_id)
        return self.operation(rrpid)

    def settle_auth_reversal(
        self, rrpid: bytes, approved: bool, code: int, kept: int, cap_token: bytes
    ) -> Operation:
        """The answer to an authorization reversal: the operation and, if approved, what
        stays authorized with its new capture token, saved in one transaction.

        An order that already shows this answer (saved apart by an earlier setpay that
        died before settling the operation) is left as it is.
        """
        target = OrderState.AUTHORIZED if kept > 0 else OrderState.REVERSED
        with self._write() as conn:
            xid, ended = self._settle(conn, rrpid, approved, code, kept, "")
            row = conn.execute(
                "SELECT state, auth_amount, cap_token FROM orders WHERE xid = ?", (xid,)
            ).fetchone()
            # Only the call that ended the operation moves the order: a second sender
            # saving the same answer later must not put back what a newer reversal of the
            # order has changed since.
            if ended and approved and tuple(row) != (target.value, kept, cap_token):
                self._move(
                    conn, xid, (OrderState.AUTHORIZED,), target,
                    auth_amount=kept, cap_token=cap_token,
                )  # fmt: skip
        return self.operation(rrpid)

    def _settle(
        self,
        conn: sqlite3.Connection,
        rrpid: bytes,
        succeeded: bool,
        code: int,
        amount: int,
        batch_id: str,
    ) -> tuple[bytes, bool]:
        """Mark a sent operation answered; its order's XID, and whether this call ended
        it (False: another sender saved the same answer before)."""
        state = OperationState.SUCCEEDED if succeeded else OperationState.REFUSED
        ended = request_rows.end(
            conn, "operations", rrpid, state, result_code=code, result_amount=amount,
            batch_id=batch_id,
        )  # fmt: skip
        row = conn.execute("SELECT xid FROM operations WHERE rrpid = ?", (rrpid,)).fetchone()
        xid: bytes = row[0]
        return xid, ended

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

    def operation(self, rrpid: bytes) -> Operation:
        """The operation with this RRPID."""
        row = self._read(
            lambda c: c.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations WHERE rrpid = ?",  # noqa: S608 - constant SQL
                (rrpid,),
            ).fetchone()
        )
        if row is None:
            raise UnknownOrder("no operation with this RRPID")
        return operation_from_row(row)

    def operations(self, xid: bytes | None = None) -> list[Operation]:
        """An order's operations (or all of them), oldest first."""
        where, params = ("WHERE xid = ?", (xid,)) if xid is not None else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations {where} "  # noqa: S608 - constant SQL
                "ORDER BY created_ms, rrpid",
                params,
            ).fetchall()
        )
        return [operation_from_row(r) for r in rows]

    # -- batches ----------------------------------------------------------------------

    def record_batch(self, batch_id: str, status: int, closed: bool, summary: bytes) -> None:
        """The gateway's latest word on a settlement batch (BatchAdminResData bytes)."""
        with self._write() as conn:
            self._record_batch(conn, batch_id, status, closed, summary)

    @staticmethod
    def _record_batch(
        conn: sqlite3.Connection, batch_id: str, status: int, closed: bool, summary: bytes
    ) -> None:
        conn.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?) ON CONFLICT(batch_id) DO UPDATE SET "
            "status = excluded.status, closed = excluded.closed, "
            "summary = excluded.summary, updated_ms = excluded.updated_ms",
            (batch_id, status, int(closed), summary, now_ms()),
        )

    def batches(self) -> list[tuple[str, int, bool]]:
        """Known batches: (batch id, last status, closed)."""
        rows = self._read(
            lambda c: c.execute(
                "SELECT batch_id, status, closed FROM batches ORDER BY updated_ms"
            ).fetchall()
        )
        return [(r[0], r[1], bool(r[2])) for r in rows]

    def add_batch_request(self, request: BatchRequest) -> BatchRequest:
        """A batch open, close or purge as it will be sent (stored first, then sent); or,
        storing nothing, the change of the same batch already waiting for its answer.

        Looked for and stored in one transaction: two commands never both store one.
        """
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests "  # noqa: S608 - constant SQL
                "WHERE batch_id = ? AND state = ? ORDER BY created_ms, rrpid",
                (request.batch_id, OperationState.SENT.value),
            ).fetchone()
            if row is not None:
                return batch_request_from_row(row)
            self._insert_batch_request(conn, request)
        return self.batch_request(request.rrpid)

    def renew_batch_request(
        self, old: BatchRequest, error_code: int, fresh: BatchRequest
    ) -> BatchRequest:
        """A sent batch request the gateway refused with ``error_code`` gives way to the
        same request built afresh: the one ends failed, the other is stored, together."""
        with self._write() as conn:
            request_rows.end_renewed(conn, "batch_requests", old.rrpid, error_code)
            self._insert_batch_request(conn, fresh)
        return self.batch_request(fresh.rrpid)

    @staticmethod
    def _insert_batch_request(conn: sqlite3.Connection, r: BatchRequest) -> None:
        now = now_ms()
        conn.execute(
            f"INSERT INTO batch_requests ({BATCH_REQUEST_COLUMNS}, updated_ms) "  # noqa: S608 - constant SQL
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, x'', ?, 0, 0, 0, ?)",
            (r.rrpid, r.operation, r.batch_id, int(r.return_summary), r.starting_point,
             r.maximum_items, OperationState.SENT.value, r.request, r.request_digest, now, now),
        )  # fmt: skip

    def fail_batch_request(self, rrpid: bytes, error_code: int) -> BatchRequest:
        """The gateway refused a sent batch request with a verified SET Error."""
        with self._write() as conn:
            request_rows.end(
                conn, "batch_requests", rrpid, OperationState.FAILED, error_code=error_code
            )
        return self.batch_request(rrpid)

    def settle_batch_request(
        self, rrpid: bytes, succeeded: bool, status: int, answer: bytes, batch: str, closed: bool
    ) -> BatchRequest:
        """The gateway's verified answer (BatchAdminResData bytes) to a batch request, and,
        when it succeeded, what it says of ``batch``: saved together."""
        state = OperationState.SUCCEEDED if succeeded else OperationState.REFUSED
        with self._write() as conn:
            ended = request_rows.end(
                conn, "batch_requests", rrpid, state, status=status, answer=answer
            )
            if ended and succeeded:  # else saved already, with what it says of the batch
                self._record_batch(conn, batch, status, closed, answer)
        return self.batch_request(rrpid)

    def batch_request(self, rrpid: bytes) -> BatchRequest:
        """The batch request with this RRPID."""
        row = self._read(
            lambda c: c.execute(
                f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests WHERE rrpid = ?",  # noqa: S608 - constant SQL
                (rrpid,),
            ).fetchone()
        )
        if row is None:
            raise UnknownOrder("no batch request with this RRPID")
        return batch_request_from_row(row)

    def batch_requests(self, state: OperationState | None = None) -> list[BatchRequest]:
        """Batch requests (those in ``state``, or all), oldest first."""
        where, params = ("WHERE state = ?", (state.value,)) if state is not None else ("", ())
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests {where} "  # noqa: S608 - constant SQL
                "ORDER BY created_ms, rrpid",
                params,
            ).fetchall()
        )
        return [batch_request_from_row(r) for r in rows]
