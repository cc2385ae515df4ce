"""Hold expiry: posting the release of holds past their expiry, so that expiry sticks.

Whether a hold has expired is a comparison with a clock, and the clocks of decisions
disagree: hosts skew, a clock steps back, and a decision's ``now`` is taken before it
waits for its card's lock or its write turn. Were expiry only that comparison, a decision
whose clock reads later could give a hold's credit to a new authorization, and one whose
clock reads earlier could then still capture the hold: the card would end above its limit.

So a decision that treats a hold as expired posts its release in its own transaction (the
hold's status becomes ``expired``), and from then on every decision sees it expired,
whatever its clock:

- a decision that counts a card's available credit (an authorization, a credit reversal)
  first releases that card's due holds (``release_due_for_card``), then counts the card's
  ``debits_pending`` as it stands;
- a capture or an authorization reversal that finds its hold expired releases that hold
  before declining;
- ``expire_holds`` releases the due holds no decision touched (the periodic sweep,
  ``sweeper``), so the merchants' pending balances and the books catch up.

Every one of them holds the card's lock when it releases the card's holds (``store``).
"""

from __future__ import annotations

from gateway.ledger import accounts, books
from gateway.ledger.books import Phase, TransferKind
from gateway.ledger.holds import lock_hold, update_hold
from gateway.ledger.store import Row, Transaction

# Due holds one decision releases for its card. A card whose holds fell due since the
# sweep last ran has a few; a bound keeps a card with a backlog (the sweep stopped for a
# while) from holding the writer through thousands of postings in one authorization.
CARD_EXPIRE_BATCH = 50


def release(tx: Transaction, hold: Row, now_ms: int) -> int:
    """Post the release of a locked pending hold's remaining amount; return that amount."""
    amount = int(hold["pending"])
    books.post_transfer(
        tx,
        kind=TransferKind.EXPIRY,
        phase=Phase.VOID,
        debit_account_id=str(hold["card_account_id"]),
        credit_account_id=str(hold["merchant_account_id"]),
        amount=amount,
        currency=int(hold["currency"]),
        now_ms=now_ms,
        hold_id=str(hold["id"]),
    )
    update_hold(tx, hold, pending=0, status="expired")
    return amount


def release_due_for_card(tx: Transaction, card: Row, now_ms: int) -> int:
    """Release the locked card's holds due at ``now_ms``, the longest due first, at most
    CARD_EXPIRE_BATCH of them; return the amount they held.

    One indexed range read (``holds_by_card``), empty unless a hold fell due since the
    sweep last ran. Due holds beyond the batch keep counting against the card until the
    sweep or a later decision releases them: a decision may decline that could have
    approved, never the reverse.
    """
    due = tx.all(
        "SELECT * FROM holds WHERE card_account_id = ? AND status = 'pending'"  # noqa: S608  lock suffix only
        f" AND expires_at_ms <= ? ORDER BY expires_at_ms, id LIMIT ?{tx.row_lock}",
        card["id"],
        now_ms,
        CARD_EXPIRE_BATCH,
    )
    return sum(release(tx, hold, now_ms) for hold in due)


def pending_after_release(tx: Transaction, card: Row, now_ms: int) -> int:
    """What the locked card's holds hold once its due holds are released (``card`` is the
    row as locked, before the release)."""
    return int(card["debits_pending"]) - release_due_for_card(tx, card, now_ms)


def expire_holds(tx: Transaction, *, now_ms: int, limit: int) -> int:
    """Release up to ``limit`` holds past their expiry; return how many were released."""
    due = tx.all(
        "SELECT id, card_account_id FROM holds WHERE status = 'pending' AND expires_at_ms <= ?"
        " ORDER BY expires_at_ms, id LIMIT ?",
        now_ms,
        limit,
    )
    released = 0
    # Every card first, in id order, then the holds, then (through the postings) the
    # merchants: the locking order ``store`` documents.
    for card_id in sorted({str(r["card_account_id"]) for r in due}):
        accounts.lock_card(tx, card_id)
    for ref in sorted(due, key=lambda r: (str(r["card_account_id"]), str(r["id"]))):
        hold = lock_hold(tx, str(ref["id"]))
        if hold is None or hold["status"] != "pending" or int(hold["expires_at_ms"]) > now_ms:
            continue  # captured or released meanwhile (PostgreSQL, another host)
        release(tx, hold, now_ms)
        released += 1
    return released


def any_due(tx: Transaction, *, now_ms: int) -> bool:
    """Whether some hold is due for release (a read, so an idle sweep never writes)."""
    return (
        tx.one(
            "SELECT 1 AS due FROM holds WHERE status = 'pending' AND expires_at_ms <= ? LIMIT 1",
            now_ms,
        )
        is not None
    )
