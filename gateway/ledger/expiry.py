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
  first releases that card's due holds, at most ``holds.CARD_EXPIRE_BATCH``
  (``DueReleases``), then counts the card's ``debits_pending`` as it stands; a request
  refused before it counts the credit releases nothing (the rule above ``DueReleases``);
  a read of the card counts the same holds as released (``accounts.effective_pending``);
- a capture or an authorization reversal that finds its hold expired releases that hold
  before declining;
- ``expire_holds`` releases the due holds no decision touched (the periodic sweep,
  ``sweeper``), so the merchants' pending balances and the books catch up.

Every one of them holds the card's lock when it releases the card's holds, and a release
changes the balance of the hold's merchant, who may not be the decision's: so a
transaction that changes several merchants locks them all, in id order and in one
statement, before the first change (``lock_merchants``; on PostgreSQL, as SQLite has a
single writer), the order ``store`` documents. One that changes one merchant (a capture
or reversal releasing its own hold, an authorization with nothing due) locks it as it
always did.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.ledger import accounts, books
from gateway.ledger.books import Phase, TransferKind
from gateway.ledger.holds import due_for_card, lock_hold, update_hold
from gateway.ledger.store import Row, Transaction


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


def lock_merchants(tx: Transaction, merchant_account_ids: Iterable[str]) -> None:
    """Lock these merchants' ``accounts`` rows until commit, in id order, in one statement.

    A transaction that changes several merchants' balances takes them all here, before the
    first change, so that of two such transactions one may wait for the other but never
    each for the other (``store``). The database sorts them in the statement itself, so
    every such lock agrees on the order whatever the ids' collation.
    """
    ids = sorted(set(merchant_account_ids))
    if not ids or not tx.row_lock:
        return  # one writer at a time (SQLite): there is no order to keep
    marks = ", ".join("?" for _ in ids)
    tx.all(f"SELECT id FROM accounts WHERE id IN ({marks}) ORDER BY id{tx.row_lock}", *ids)  # noqa: S608  placeholders and lock suffix only


# Which decisions release due holds, and when. A decision releases a card's due holds
# only as it comes to count the card's available credit: every check that needs no credit
# (the request's own figures: the original it names, its amount, batch, currency or PAN
# data expiry; the account's state) comes first, and a request refused by one of them
# changes no balance, hold or journal entry, as a bad call must not (``limits``); only its
# decision is kept, under its RRPID. Once a decision has counted the card's credit, the
# releases it counted are committed with whatever it decides, a refusal for want of credit
# included: it took those holds as expired, so every later decision must, whatever its
# clock. ``DueReleases`` applies it for an authorization and a credit reversal alike.


class DueReleases:
    """The due holds (``holds.due_for_card``) of a decision's locked cards, each card's
    released by ``count`` as the decision comes to count that card's credit.

    Made once the cards are locked and before the decision's own merchant is: it locks
    the due holds, then their merchants and ``merchant_account_id``, the decision's own,
    together (``lock_merchants``), since any of them may change later in the transaction.
    Due holds beyond a card's batch keep counting against it until the sweep or a later
    decision releases them: a decision may decline that could have approved, never the
    reverse.
    """

    def __init__(
        self, tx: Transaction, card_ids: Iterable[str], *, merchant_account_id: str, now_ms: int
    ) -> None:
        """Lock the due holds of ``card_ids`` (locked already) and every merchant they name."""
        self._tx = tx
        self._now_ms = now_ms
        self._due = {
            card_id: due_for_card(tx, card_id, now_ms) for card_id in sorted(set(card_ids))
        }
        merchants = [str(h["merchant_account_id"]) for due in self._due.values() for h in due]
        if merchants:  # else the usual case: the decision changes its own merchant only
            lock_merchants(tx, [merchant_account_id, *merchants])

    def count(self, card: Row) -> int:
        """What the locked ``card`` holds once its due holds are released, releasing them
        the first time the decision counts the card (``card``: its row as read before
        this call)."""
        released = sum(
            release(self._tx, hold, self._now_ms) for hold in self._due.pop(str(card["id"]), [])
        )
        return int(card["debits_pending"]) - released


def expire_holds(tx: Transaction, *, now_ms: int, limit: int) -> int:
    """Release up to ``limit`` holds past their expiry; return how many were released."""
    due = tx.all(
        "SELECT id, card_account_id, merchant_account_id FROM holds"
        " WHERE status = 'pending' AND expires_at_ms <= ? ORDER BY expires_at_ms, id LIMIT ?",
        now_ms,
        limit,
    )
    released = 0
    # Every card first, in id order, then every merchant, in id order, then the holds:
    # the locking order ``store`` documents. A hold's card and merchant never change, so
    # the unlocked read names them rightly; a hold released meanwhile is skipped below.
    for card_id in sorted({str(r["card_account_id"]) for r in due}):
        accounts.lock_card(tx, card_id)
    lock_merchants(tx, (str(r["merchant_account_id"]) for r in due))
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
