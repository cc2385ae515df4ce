"""Read-only reports on the ledger for tools outside the money path (the bench, the
bank's operator).

Nothing here writes, and nothing here is part of a decision: a report is a count over the
tables, read on a snapshot (``LedgerStore.read``), the same text on SQLite and PostgreSQL.

``merchant_holds`` counts the holds ever made for one merchant, and what they were
authorized for. Hold rows are never deleted (retention prunes only ``requests`` and
``pi_uses``), and nothing but a hold's creation changes how many a merchant has: an
expiry, a capture or a release changes a hold's figures, not its existence. So the growth
of the count between two readings is the holds made for that merchant in between, whatever
the hold sweeper, or other merchants' traffic, did meanwhile. The sum is of ``amount``,
which only an authorization reversal lowers.

``batch_totals`` is a settlement batch as the bank's operator reads it (``setpay bank
show-batch``): its state and, for each currency its transfers are in, how many captures,
credits and reversals of either it holds and their sums. The journal keeps every posting
of a purged batch, so its totals stand. Its transfers are counted by their own currency,
not assumed to be the merchant account's: if the books ever held one in another (which
``books.differences`` reports), the report shows it apart rather than adding it in.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.accounts import merchant_row
from gateway.ledger.errors import UnknownBatch
from gateway.ledger.exact_sums import grouped_sums
from gateway.ledger.outcomes import KindTotals, TransactionKind
from gateway.ledger.pan import echoed
from gateway.ledger.store import Transaction


@dataclass(frozen=True)
class MerchantHolds:
    """The holds made for one merchant so far: how many, and their amounts summed."""

    count: int
    amount: int


def merchant_holds(tx: Transaction, merchant_id: str) -> MerchantHolds:
    """The holds of ``merchant_id``'s account (``MerchantHolds``); raise UnknownMerchant.

    The ``holds`` table has no index on the merchant: this reads the whole table, which
    a tool run between benchmark steps can afford and a decision could not."""
    account_id = str(merchant_row(tx, merchant_id)["id"])
    # Every hold ever made for the merchant: their sum may pass int64 (``exact_sums``).
    rows = grouped_sums(
        tx,
        "SELECT COUNT(*) AS holds, COALESCE(SUM(amount), 0) AS amount FROM holds"
        " WHERE merchant_account_id = ?",
        "SELECT 1 AS holds, amount FROM holds WHERE merchant_account_id = ?",
        (),
        ("holds", "amount"),
        account_id,
    )
    if not rows:
        return MerchantHolds(0, 0)
    return MerchantHolds(int(rows[0]["holds"]), int(rows[0]["amount"]))


@dataclass(frozen=True)
class BatchTotals:
    """One merchant's settlement batch: its state, and its totals per currency."""

    merchant_id: str
    batch_id: str
    status: str
    """``open``, ``closed`` or ``purged``."""
    opened_at_ms: int
    closed_at_ms: int | None
    account_currency: int
    """The merchant's settlement account's currency, always among ``totals``."""
    totals: dict[int, dict[TransactionKind, KindTotals]]
    """By currency (ascending), every settlement kind, with zeros where the batch has none."""

    def net(self, currency: int) -> int:
        """What the batch settles to the merchant in ``currency`` (negative: it takes
        back): captures less capture reversals, less credits net of their reversals."""
        kinds = self.totals[currency]
        return (
            kinds[TransactionKind.CAPTURE].amount
            - kinds[TransactionKind.CAPTURE_REVERSAL].amount
            - kinds[TransactionKind.CREDIT].amount
            + kinds[TransactionKind.CREDIT_REVERSAL].amount
        )


_SETTLEMENT_KINDS = tuple(kind.value for kind in TransactionKind)
# A batch's transfers are found by ``transfers_batch_seq`` (batch_id, batch_seq). Its
# sums stay within int64: each kind's posts to one of the merchant's posted sums, which
# only grow and which the store keeps within it (``limits``).
_BATCH_TOTALS = (
    f"SELECT currency, kind, COUNT(*) AS n, SUM(amount) AS total FROM transfers"  # noqa: S608  fixed text
    f" WHERE batch_id = ? AND kind IN ({', '.join('?' for _ in _SETTLEMENT_KINDS)})"
    " GROUP BY currency, kind"
)


def _no_transactions() -> dict[TransactionKind, KindTotals]:
    return {kind: KindTotals(count=0, amount=0) for kind in TransactionKind}


def batch_totals(tx: Transaction, merchant_id: str, batch_id: str) -> BatchTotals:
    """The batch ``batch_id`` of ``merchant_id`` (``BatchTotals``); raise UnknownMerchant,
    or UnknownBatch if the merchant has no batch of that id (another merchant's is not
    shown under this one's name). Only settlement kinds are counted: a transfer of
    another kind filed in a batch is a fault of the books (``books.differences``), not
    part of what the batch settles."""
    merchant = merchant_row(tx, merchant_id)
    batch = tx.one(
        "SELECT status, opened_at_ms, closed_at_ms FROM batches"
        " WHERE id = ? AND merchant_account_id = ?",
        batch_id,
        merchant["id"],
    )
    if batch is None:
        raise UnknownBatch(f"merchant {echoed(merchant_id)} has no batch {echoed(batch_id)}")
    currency = int(merchant["currency"])
    totals = {currency: _no_transactions()}
    for r in tx.all(_BATCH_TOTALS, batch_id, *_SETTLEMENT_KINDS):
        kinds = totals.setdefault(int(r["currency"]), _no_transactions())
        kinds[TransactionKind(r["kind"])] = KindTotals(int(r["n"]), int(r["total"]))
    closed = batch["closed_at_ms"]
    return BatchTotals(
        merchant_id=str(merchant["merchant_id"]),
        batch_id=batch_id,
        status=str(batch["status"]),
        opened_at_ms=int(batch["opened_at_ms"]),
        closed_at_ms=None if closed is None else int(closed),
        account_currency=currency,
        totals=dict(sorted(totals.items())),
    )
