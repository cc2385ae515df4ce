"""Read-only reports on the ledger for tools outside the money path (the bench).

Nothing here writes, and nothing here is part of a decision: a report is a count over the
tables, read on a snapshot (``LedgerStore.read``), the same text on SQLite and PostgreSQL.

``merchant_holds`` counts the holds ever made for one merchant, and what they were
authorized for. Hold rows are never deleted (retention prunes only ``requests`` and
``pi_uses``), and nothing but a hold's creation changes how many a merchant has: an
expiry, a capture or a release changes a hold's figures, not its existence. So the growth
of the count between two readings is the holds made for that merchant in between, whatever
the hold sweeper, or other merchants' traffic, did meanwhile. The sum is of ``amount``,
which only an authorization reversal lowers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.accounts import merchant_row
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
    row = tx.one(
        "SELECT COUNT(*) AS holds, COALESCE(SUM(amount), 0) AS amount FROM holds"
        " WHERE merchant_account_id = ?",
        account_id,
    )
    if row is None:
        return MerchantHolds(0, 0)
    return MerchantHolds(int(row["holds"]), int(row["amount"]))
