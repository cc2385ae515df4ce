"""The merchant's settlement operations and batch changes, each stored before it is sent.

A capture, refund or reversal (table ``operations``) and a batch open, close or purge
(``batch_requests``) are stored as the exact bytes sent, "sent", before they go to the
gateway, and end once its answer is final (``request_rows``); one refused as too old
gives way to the same request built afresh, in one transaction.

An operation is stored only if the order still allows it, checked in the transaction
that stores it (``add_operation``'s ``admit``): two commands at once (two threads, a
command beside a serving merchant) never both pass a check on the same money. A batch
change is stored only while no change of that batch waits, looked up the same way.

Errors: ``sqlite3`` failures become ``StoreError``; unknown keys ``UnknownOrder``; a
change the request's state forbids, ``OrderStateError``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from clients.merchant import request_rows
from clients.merchant.database import Database, now_ms
from clients.merchant.order_store import move_order, read_order
from clients.merchant.records import (
    BatchRequest,
    Money,
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
    SENT_ONLY,
    batch_request_from_row,
    in_state,
    operation_from_row,
)

Admit = Callable[[Order, list[Operation]], None]
"""Given an order and its operations as they stand in a write transaction, raises to
refuse what is about to be stored."""


def read_operations(
    conn: sqlite3.Connection, xid: bytes | None = None, state: OperationState | None = None
) -> list[Operation]:
    """An order's operations (or all of them; those in ``state``, or all), oldest first,
    read on ``conn``."""
    terms = [in_state(state)] if state is not None else []
    params: tuple[bytes, ...] = ()
    if xid is not None:
        terms, params = [*terms, "xid = ?"], (xid,)
    where = f"WHERE {' AND '.join(terms)}" if terms else ""
    rows = conn.execute(
        f"SELECT {OPERATION_COLUMNS} FROM operations {where} "  # noqa: S608 - constant SQL
        "ORDER BY created_ms, rrpid",
        params,
    ).fetchall()
    return [operation_from_row(r) for r in rows]


class SettlementStore(Database):
    """Settlement operations and batch changes (``MerchantStore`` is this and more)."""

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
        *,
        admit: Admit | None = None,
    ) -> Operation:
        """A capture, refund or reversal as it will be sent (stored first, then sent).

        ``admit`` is given the order and its operations as they stand in the transaction
        that would store it, under the file's write lock; what it raises stores nothing.
        """
        with self._write() as conn:
            if admit is not None:
                admit(read_order(conn, xid), read_operations(conn, xid))
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
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '', ?, 0, 0, 0, 0, ?)",
            (rrpid, xid, kind.value, amount.currency, amount.minor, amount.exp10,
             OperationState.SENT.value, request, request_digest, original_rrpid, now, now),
        )  # fmt: skip

    def fail_operation(self, rrpid: bytes, error_code: int) -> Operation:
        """The gateway refused a sent operation with a verified SET Error (``error_code``)."""
        with self._write() as conn:
            request_rows.refuse_answered_unreadably(
                conn, "operations", "rrpid", rrpid, f"operation {short(rrpid)}"
            )
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
                move_order(
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

    def operation(self, rrpid: bytes) -> Operation:
        """The operation with this RRPID."""
        row = self._one(
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE rrpid = ?",  # noqa: S608 - constant SQL
            rrpid, "no operation with this RRPID",
        )  # fmt: skip
        return operation_from_row(row)

    def operations(
        self, xid: bytes | None = None, state: OperationState | None = None
    ) -> list[Operation]:
        """An order's operations (or all of them; those in ``state``, or all), oldest first."""
        return self._read(lambda c: read_operations(c, xid, state))

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
                f"WHERE batch_id = ? AND {SENT_ONLY} ORDER BY created_ms, rrpid",
                (request.batch_id,),
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
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, x'', ?, 0, 0, 0, 0, ?)",
            (r.rrpid, r.operation, r.batch_id, int(r.return_summary), r.starting_point,
             r.maximum_items, OperationState.SENT.value, r.request, r.request_digest, now, now),
        )  # fmt: skip

    def fail_batch_request(self, rrpid: bytes, error_code: int) -> BatchRequest:
        """The gateway refused a sent batch request with a verified SET Error."""
        with self._write() as conn:
            request_rows.refuse_answered_unreadably(
                conn, "batch_requests", "rrpid", rrpid, f"batch request {short(rrpid)}"
            )
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
        row = self._one(
            f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests WHERE rrpid = ?",  # noqa: S608 - constant SQL
            rrpid, "no batch request with this RRPID",
        )  # fmt: skip
        return batch_request_from_row(row)

    def batch_requests(self, state: OperationState | None = None) -> list[BatchRequest]:
        """Batch requests (those in ``state``, or all), oldest first."""
        where = f"WHERE {in_state(state)}" if state is not None else ""
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests {where} "  # noqa: S608 - constant SQL
                "ORDER BY created_ms, rrpid"
            ).fetchall()
        )
        return [batch_request_from_row(r) for r in rows]
