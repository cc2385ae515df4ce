"""Settlement batches: where each capture, credit and reversal is filed for a merchant.

Every settlement transaction gets a batch id and a sequence number (1, 2, ...) in a batch
of its merchant: the one the request names, or else the merchant's open batch, opened on
the spot if there is none. A merchant has at most one open batch (a unique index says
so). Closing a batch stops it taking transactions. Purging a closed batch retires its
detail: its transactions leave the detail listing and can no longer be reversed
(``ORIGINAL_PURGED``); the journal keeps every posting, as books must, and the summary
keeps the totals.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger import accounts
from gateway.ledger.errors import StoreError, UnknownBatch
from gateway.ledger.identifiers import new_id
from gateway.ledger.outcomes import (
    BatchOutcome,
    BatchSummary,
    Decline,
    Declined,
    KindTotals,
    TransactionKind,
)
from gateway.ledger.pan import echoed
from gateway.ledger.store import Row, Transaction

# Random part of a batch id: 80 bits, unguessable across merchants and short on paper
# (16 base32 characters).
BATCH_ID_BYTES = 10


@dataclass(frozen=True)
class BatchTransaction:
    """One transaction in a batch's detail listing."""

    batch_seq: int
    kind: TransactionKind
    hold_id: str
    xid: bytes
    rrpid: bytes
    amount: int
    currency: int
    created_at_ms: int


@dataclass(frozen=True)
class BatchPage:
    """A page of a batch's transactions; ``next_starting_point`` is 0 after the last page."""

    items: tuple[BatchTransaction, ...]
    next_starting_point: int


@dataclass(frozen=True)
class BatchReport:
    """A batch's summary and a page of its transactions, read in one snapshot, so the
    page lists exactly what the summary counts (as far as the page reaches)."""

    summary: BatchSummary
    page: BatchPage


def _find(tx: Transaction, merchant_account_id: str, batch_id: str | None) -> Row | None:
    if batch_id is None:
        return tx.one(
            "SELECT * FROM batches WHERE merchant_account_id = ? AND status = 'open'",
            merchant_account_id,
        )
    return tx.one(
        "SELECT * FROM batches WHERE id = ? AND merchant_account_id = ?",
        batch_id,
        merchant_account_id,
    )


def _open(tx: Transaction, merchant_account_id: str, now_ms: int) -> str:
    batch_id = new_id("batch", BATCH_ID_BYTES)
    tx.run(
        "INSERT INTO batches (id, merchant_account_id, status, opened_at_ms)"
        " VALUES (?, ?, 'open', ?)",
        batch_id,
        merchant_account_id,
        now_ms,
    )
    return batch_id


def batch_for_posting(
    tx: Transaction, merchant_account_id: str, requested: str | None, now_ms: int
) -> str | Decline:
    """The batch a new transaction goes into, or why it cannot go where requested.

    The caller holds the merchant's account lock, so two requests cannot both open a batch.
    """
    row = _find(tx, merchant_account_id, requested)
    if row is None:
        if requested is not None:
            return Decline.BATCH_UNKNOWN
        return _open(tx, merchant_account_id, now_ms)
    if row["status"] != "open":
        return Decline.BATCH_CLOSED
    return str(row["id"])


def refusal(tx: Transaction, merchant_account_id: str, requested: str | None) -> Decline | None:
    """Why ``batch_for_posting`` would refuse the requested batch, found by a read (None:
    it would not; the merchant's open batch is always to be had, opened if need be)."""
    if requested is None:
        return None
    row = _find(tx, merchant_account_id, requested)
    if row is None:
        return Decline.BATCH_UNKNOWN
    return None if row["status"] == "open" else Decline.BATCH_CLOSED


def next_seq(tx: Transaction, batch_id: str) -> int:
    """Take the batch's next sequence number."""
    row = tx.one(
        "UPDATE batches SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", batch_id
    )
    if row is None:  # the batch was just found or created in this transaction
        raise StoreError(f"the batch {batch_id} is missing")
    return int(row["last_seq"])


def summary_of(tx: Transaction, batch: Row, merchant: Row) -> BatchSummary:
    """The summary of a batch row, with totals per transaction kind."""
    totals = {kind: KindTotals(count=0, amount=0) for kind in TransactionKind}
    for r in tx.all(
        "SELECT kind, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM transfers"
        " WHERE batch_id = ? GROUP BY kind",
        batch["id"],
    ):
        totals[TransactionKind(r["kind"])] = KindTotals(count=int(r["n"]), amount=int(r["total"]))
    closed = batch["closed_at_ms"]
    return BatchSummary(
        batch_id=str(batch["id"]),
        merchant_id=str(merchant["merchant_id"]),
        status=str(batch["status"]),
        currency=int(merchant["currency"]),
        opened_at_ms=int(batch["opened_at_ms"]),
        closed_at_ms=None if closed is None else int(closed),
        totals=totals,
    )


def open_batch(tx: Transaction, merchant: Row, now_ms: int) -> BatchOutcome | Declined:
    """Open a new batch for a (locked) merchant unless one is open already."""
    if _find(tx, str(merchant["id"]), None) is not None:
        return Declined(Decline.BATCH_ALREADY_OPEN)
    batch_id = _open(tx, str(merchant["id"]), now_ms)
    batch = _find(tx, str(merchant["id"]), batch_id)
    if batch is None:
        raise StoreError(f"the batch {batch_id} inserted in this transaction is missing")
    return BatchOutcome(summary_of(tx, batch, merchant))


def close_batch(
    tx: Transaction, merchant: Row, batch_id: str | None, now_ms: int
) -> BatchOutcome | Declined:
    """Close the named batch, or the open one when ``batch_id`` is None."""
    batch = _find(tx, str(merchant["id"]), batch_id)
    if batch is None:
        return Declined(Decline.BATCH_UNKNOWN)
    if batch["status"] != "open":
        return Declined(Decline.BATCH_CLOSED)
    tx.run(
        "UPDATE batches SET status = 'closed', closed_at_ms = ? WHERE id = ?", now_ms, batch["id"]
    )
    closed = _find(tx, str(merchant["id"]), str(batch["id"]))
    if closed is None:
        raise StoreError(f"the batch {batch['id']} updated in this transaction is missing")
    return BatchOutcome(summary_of(tx, closed, merchant))


def purge_batch(tx: Transaction, merchant: Row, batch_id: str) -> BatchOutcome | Declined:
    """Retire the detail of a closed batch."""
    batch = _find(tx, str(merchant["id"]), batch_id)
    if batch is None or batch["status"] == "purged":
        return Declined(Decline.BATCH_UNKNOWN)
    if batch["status"] == "open":
        return Declined(Decline.BATCH_NOT_CLOSED)
    tx.run("UPDATE batches SET status = 'purged' WHERE id = ?", batch_id)
    purged = _find(tx, str(merchant["id"]), batch_id)
    if purged is None:
        raise StoreError(f"the batch {batch_id} updated in this transaction is missing")
    return BatchOutcome(summary_of(tx, purged, merchant))


def summary(tx: Transaction, merchant: Row, batch_id: str | None) -> BatchSummary:
    """A batch's summary (the open one when ``batch_id`` is None); raise UnknownBatch."""
    batch = _find(tx, str(merchant["id"]), batch_id)
    if batch is None:
        raise UnknownBatch(f"merchant {echoed(str(merchant['merchant_id']))} has no such batch")
    return summary_of(tx, batch, merchant)


def details(
    tx: Transaction, merchant: Row, batch_id: str, starting_point: int, max_items: int
) -> BatchPage:
    """Up to ``max_items`` transactions after sequence number ``starting_point``."""
    batch = _find(tx, str(merchant["id"]), batch_id)
    if batch is None:
        raise UnknownBatch(f"merchant {echoed(str(merchant['merchant_id']))} has no such batch")
    if batch["status"] == "purged":
        return BatchPage(items=(), next_starting_point=0)
    rows = tx.all(
        "SELECT t.batch_seq, t.kind, t.hold_id, t.rrpid, t.amount, t.currency,"
        " t.created_at_ms, h.xid FROM transfers t JOIN holds h ON h.id = t.hold_id"
        " WHERE t.batch_id = ? AND t.batch_seq > ? ORDER BY t.batch_seq LIMIT ?",
        batch_id,
        starting_point,
        max_items + 1,
    )
    items = tuple(
        BatchTransaction(
            batch_seq=int(r["batch_seq"]),
            kind=TransactionKind(r["kind"]),
            hold_id=str(r["hold_id"]),
            xid=bytes(r["xid"]),
            rrpid=bytes(r["rrpid"]),
            amount=int(r["amount"]),
            currency=int(r["currency"]),
            created_at_ms=int(r["created_at_ms"]),
        )
        for r in rows[:max_items]
    )
    more = len(rows) > max_items
    return BatchPage(items=items, next_starting_point=items[-1].batch_seq if more else 0)


# The rules as ``Ledger`` hands them to its store: by merchant id, the merchant's row read
# (and locked, for a change) in the same transaction.


def open_for_merchant(tx: Transaction, *, merchant_id: str, now_ms: int) -> BatchOutcome | Declined:
    """``open_batch`` for the merchant with this id."""
    return open_batch(tx, accounts.merchant_row(tx, merchant_id, lock=True), now_ms)


def close_for_merchant(
    tx: Transaction, *, merchant_id: str, batch_id: str | None, now_ms: int
) -> BatchOutcome | Declined:
    """``close_batch`` for the merchant with this id."""
    return close_batch(tx, accounts.merchant_row(tx, merchant_id, lock=True), batch_id, now_ms)


def purge_for_merchant(
    tx: Transaction, *, merchant_id: str, batch_id: str
) -> BatchOutcome | Declined:
    """``purge_batch`` for the merchant with this id."""
    return purge_batch(tx, accounts.merchant_row(tx, merchant_id, lock=True), batch_id)


def summary_for_merchant(
    tx: Transaction, *, merchant_id: str, batch_id: str | None
) -> BatchSummary:
    """``summary`` for the merchant with this id."""
    return summary(tx, accounts.merchant_row(tx, merchant_id), batch_id)


def report_for_merchant(
    tx: Transaction,
    *,
    merchant_id: str,
    batch_id: str | None,
    starting_point: int,
    max_items: int,
) -> BatchReport:
    """``summary`` and then ``details`` of the same batch, for the merchant with this id."""
    merchant = accounts.merchant_row(tx, merchant_id)
    found = summary(tx, merchant, batch_id)
    page = details(tx, merchant, found.batch_id, starting_point, max_items)
    return BatchReport(found, page)


def details_for_merchant(
    tx: Transaction, *, merchant_id: str, batch_id: str, starting_point: int, max_items: int
) -> BatchPage:
    """``details`` for the merchant with this id."""
    return details(tx, accounts.merchant_row(tx, merchant_id), batch_id, starting_point, max_items)
