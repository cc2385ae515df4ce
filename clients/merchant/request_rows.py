"""How a request stored before it was sent ends in the merchant's file: once.

A settlement operation (table ``operations``) and a batch change (``batch_requests``)
are stored "sent" before they go to the gateway and end, once, when its answer is
final: succeeded or refused (its verified answer, of a result code this release reads),
or failed (its verified SET Error).
Two senders of the same stored bytes (a command given again while a serving merchant's
round resends them, or that round starting while a command sends) both get the
gateway's one answer for the RRPID (``gateway.ledger.idempotency``); the second to save
it finds it saved, which is no error. Only a request refused as too old is ended once
and only once, since ending it stores the request built afresh in its place
(``renewal``). None, nor an order's AuthReq, is built afresh or ended failed once a
verified answer to its bytes came of a result code this release cannot read
(``AnsweredUnreadably``).

These run inside a write transaction of ``clients.merchant.store``; ``sqlite3`` errors
pass through for it to translate.
"""

from __future__ import annotations

import sqlite3

from clients.errors import OrderStateError
from clients.merchant.database import now_ms
from clients.merchant.records import OperationState, short

# What an error calls a row of each table.
_NOUNS = {"operations": "operation", "batch_requests": "batch request"}


class AnsweredUnreadably(OrderStateError):
    """A request whose bytes the gateway answered before, with a result code this release
    cannot read (the row's ``unreadable``), is neither built afresh nor ended failed: the
    gateway decided them, under a new RRPID it would decide them a second time, and a
    hold or capture may stand (``outcome.answer_gone``). Told inside the transaction that
    would store the request built afresh or end it failed, so that an answer counted by
    another sender a moment before is seen; the sender leaves it pending."""

    def __init__(self, named: str) -> None:
        super().__init__(
            f"{named} had a verified answer of a result code this release cannot read: "
            "left pending, neither built afresh nor ended failed"
        )


def refuse_answered_unreadably(
    conn: sqlite3.Connection, table: str, column: str, key: bytes, named: str
) -> None:
    """``AnsweredUnreadably`` when the row of ``table`` whose ``column`` is ``key`` counts a
    verified answer this release cannot read; inside the caller's write transaction."""
    row = conn.execute(
        f"SELECT unreadable FROM {table} WHERE {column} = ?",  # noqa: S608 - names are ours
        (key,),
    ).fetchone()
    if row is not None and row[0]:
        raise AnsweredUnreadably(named)


def end(
    conn: sqlite3.Connection, table: str, rrpid: bytes, state: OperationState, **columns: object
) -> bool:
    """End the sent request ``rrpid`` of ``table`` in ``state``, with ``columns`` (its
    answer or its error); True if this call ended it, False if it had ended so already.

    ``OrderStateError`` if it ended otherwise (or there is none): a second answer for one
    RRPID that differs from the first is not the gateway's to give.
    """
    sets = "".join(f", {name} = ?" for name in columns)
    updated = conn.execute(
        f"UPDATE {table} SET state = ?, updated_ms = ?{sets} "  # noqa: S608 - names are ours
        "WHERE rrpid = ? AND state = ?",
        (state.value, now_ms(), *columns.values(), rrpid, OperationState.SENT.value),
    ).rowcount
    if updated == 1:
        return True
    same = "".join(f" AND {name} IS ?" for name in columns)
    ended = conn.execute(
        f"SELECT 1 FROM {table} WHERE rrpid = ? AND state = ?{same}",  # noqa: S608 - names are ours
        (rrpid, state.value, *columns.values()),
    ).fetchone()
    if ended is None:
        raise OrderStateError(f"{_NOUNS[table]} {short(rrpid)} is not awaiting an answer")
    return False


def end_renewed(conn: sqlite3.Connection, table: str, rrpid: bytes, error_code: int) -> None:
    """End the sent request ``rrpid``, refused as too old, to store it built afresh; an
    ``OrderStateError`` if it has ended already, so two senders never both store one, and
    ``AnsweredUnreadably`` if its bytes had an answer this release cannot read."""
    refuse_answered_unreadably(conn, table, "rrpid", rrpid, f"{_NOUNS[table]} {short(rrpid)}")
    if not end(conn, table, rrpid, OperationState.FAILED, error_code=error_code):
        raise OrderStateError(f"{_NOUNS[table]} {short(rrpid)} was already built afresh")
