"""What the bank's ledger says about one run: the holds it made for the bench's approvals.

The bank's metrics page counts the decisions the gateway answered; it cannot say that an
approval reserved the money. The ledger can: every approval of an AuthReq makes one hold,
a pending transfer of the request's amount (``gateway.ledger.books``), filed under the
merchant that asked. Each bench run registers a merchant of its own
(``prepare.bench_merchant_id``), so the holds of that merchant are the bench's and no one
else's. The bench reads how many holds the ledger has for it, and their amounts summed,
before and after each gateway run, once the bank is at rest, and holds their growth to
the approvals it verified:

    holds grew by            approved               (one hold per approval)
    their amounts grew by    approved x amount      (every AuthReq asks the same amount)

Hold rows are never deleted, and an expiry, a release or a capture changes a hold's
figures, not how many there are (``gateway.ledger.reports``): the hold sweeper releasing
the holds of earlier runs, and other merchants' traffic on the same bank, change neither
count. A bank that approved without a hold, or made two, fails "every request accounted
for"; so does one whose holds are of another amount. The bounds a run with failed calls
is held to are the tally's (``tally``): an unanswered call may or may not have made its
hold.

The reading is made by the caller (``cli.bench``, the one module that knows the ledger):
a probe returns None when the ledger cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerReading:
    """The holds the ledger has for the bench's merchant, at one moment: how many, and
    their amounts summed (minor units)."""

    holds: int
    amount: int


LedgerProbe = Callable[[], LedgerReading | None]
"""The bank's ledger now (None when it cannot be read)."""


def no_ledger() -> LedgerReading | None:
    """Nothing known (a reference service, or a bank whose ledger the bench cannot read)."""
    return None


@dataclass(frozen=True)
class Holds:
    """What the ledger recorded for the bench's merchant during one run: the holds made,
    their amounts summed, and the amount of each of the run's AuthReqs."""

    made: int
    total: int
    amount: int

    @property
    def of_another_amount(self) -> bool:
        """Some hold is not of the amount the run's AuthReqs asked."""
        return self.total != self.made * self.amount

    def as_dict(self) -> dict[str, int]:
        """The JSON form."""
        return {"holds_made": self.made, "held_amount": self.total, "amount": self.amount}


def between(before: LedgerReading | None, after: LedgerReading | None, amount: int) -> Holds | None:
    """The ledger's growth between two readings (None when either is missing)."""
    if before is None or after is None:
        return None
    return Holds(after.holds - before.holds, after.amount - before.amount, amount)
