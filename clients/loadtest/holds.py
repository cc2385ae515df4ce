"""What the bank's ledger says about one run: the holds it made for the bench's approvals.

The bank's metrics page counts the decisions the gateway answered; it cannot say that an
approval reserved the money. The ledger can: every approval of an AuthReq makes one hold,
a pending transfer of the request's amount (``gateway.ledger.books``). The bench reads the
ledger's balance sums in its cards' currency before and after each gateway run, once the
bank is at rest, and holds their change to the approvals it verified:

    pending debits grew by   approved x amount   (every AuthReq asks the same amount)
    posted debits grew by    0                   (the bench captures nothing)

so the holds made are the growth of pending debits over the amount. A bank that approved
without a hold, or made two, or a hold of another amount, fails "every request accounted
for". A run with errors or timeouts is held to bounds instead: an unanswered call may or
may not have made a hold, so at least the approvals, at most the approvals and the calls
that failed. A call the bench gave up on may also make its hold after the reading that
closes its run, when nothing (the bank's page) said the bank was at rest: the next run
is then allowed that many more (``carried``).

The sums are the bank's whole ledger in that currency: the check assumes the bench is the
bank's only traffic while it runs, as the page's counts do. Posted debits that moved
(someone captured meanwhile) leave the holds unknown: the tally says so as a doubt.
Pending debits that grew by no whole number of holds are a problem: a hold of another
amount than the one asked.

The reading is made by the caller (``cli.bench``, the one module that knows the ledger):
a probe returns None when the ledger cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerReading:
    """The ledger's debit sums in the bench's currency, minor units, at one moment."""

    pending: int
    posted: int


LedgerProbe = Callable[[], LedgerReading | None]
"""The bank's ledger now (None when it cannot be read)."""


def no_ledger() -> LedgerReading | None:
    """Nothing known (a reference service, or a bank whose ledger the bench cannot read)."""
    return None


@dataclass(frozen=True)
class Holds:
    """What the ledger recorded during one run: its debit sums' growth, and the amount of
    each of the run's AuthReqs."""

    pending: int
    posted: int
    amount: int

    @property
    def made(self) -> int | None:
        """The holds the run made (None when the sums do not say: posted debits moved, or
        the pending growth is no whole number of holds, a problem ``problems`` names)."""
        if self.posted or self.pending % self.amount:
            return None
        return self.pending // self.amount

    def as_dict(self) -> dict[str, int | None]:
        """The JSON form."""
        return {
            "holds_made": self.made,
            "pending_debits_change": self.pending,
            "posted_debits_change": self.posted,
            "amount": self.amount,
        }


def between(before: LedgerReading | None, after: LedgerReading | None, amount: int) -> Holds | None:
    """The ledger's growth between two readings (None when either is missing)."""
    if before is None or after is None:
        return None
    return Holds(after.pending - before.pending, after.posted - before.posted, amount)


def problems(holds: Holds, approved: int, failed: int, carried: int = 0) -> tuple[str, ...]:
    """Where the holds disagree with ``approved`` verified approvals of a run whose
    ``failed`` calls had no answer, after ``carried`` calls of earlier runs that may still
    have made theirs (module docstring); empty when they agree."""
    if holds.posted:
        return ()  # ``unknown`` says why, as a doubt
    if holds.pending % holds.amount:
        return (f"the bank's pending debits changed by {holds.pending:+,}, not a whole "
                f"number of holds of {holds.amount:,}",)  # fmt: skip
    made = holds.pending // holds.amount
    most = approved + failed + carried
    if approved <= made <= most and (made == approved or failed or carried):
        return ()
    expected = f"{approved:,}" if most == approved else f"{approved:,} to {most:,}"
    return (f"the bank's ledger made {made:,} holds (pending debits {holds.pending:+,}), "
            f"the bench verified {approved:,} approvals: expected {expected}",)  # fmt: skip


def unknown(holds: Holds) -> tuple[str, ...]:
    """Why the holds could not be counted (empty when they could)."""
    if holds.posted:
        return (f"the bank's ledger posted {holds.posted:+,} of debits during the run (a "
                "capture the bench did not make): its holds were not counted",)  # fmt: skip
    return ()
