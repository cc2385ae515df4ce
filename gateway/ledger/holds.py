"""Authorization holds: the pending transfer card -> merchant behind each approval.

A hold keeps the figures every later operation checks against:

    amount            authorized now (authorization reversals lower it)
    pending           still held: amount - captured while the hold is pending
    captured          every capture, gross (capture reversals do not give it back)
    capture_reversed  captures undone
    credited          refunds, gross
    credit_reversed   refunds undone

Invariants (also CHECK constraints): captured <= amount, and what is refunded net never
exceeds what is captured net. Status is ``pending`` while something is held, ``closed``
once fully captured or released, ``expired`` once the expiry released the rest.

A hold past its ``expires_at_ms`` (due) is expired at once as a hold: a capture or
reversal of it declines HOLD_EXPIRED and posts its release, and a read shows it
``expired``. Against its card's credit it counts until its release is posted: a decision
that counts the card's credit first releases its due holds, at most ``CARD_EXPIRE_BATCH``,
and a read of the card counts as released exactly those (``due_for_card``), so the
available credit a read shows is the credit a decision at that moment counts. Due holds
beyond the batch wait for the sweep (``sweeper``) or the card's next decisions.

What the authorization stands at (``still_authorized``) is what was captured plus what is
still held: ``amount`` while the hold lives, only the captured part once it has expired.
Since ``captured`` stays gross, the part of an authorization a capture reversal undid is
spent as an authorization: it cannot be captured again, and no authorization reversal
goes below it. The card's credit is not tied up by it (the reversal gave the money back
and it is not held); the merchant needs a new authorization to take it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.errors import UnknownHold
from gateway.ledger.pan import echoed
from gateway.ledger.store import Row, Transaction

# Due holds one decision releases for its card (``expiry``). A card whose holds fell due
# since the sweep last ran has a few; the bound keeps a card with a backlog (the sweep
# stopped for a while) from holding its lock and the writer through thousands of
# postings in one authorization. The rest keep counting against the card, in decisions
# and reads alike, until the sweep or later decisions release them: a card with a
# backlog may be declined what it could have had, never granted more than it has.
CARD_EXPIRE_BATCH = 50

# A card's due holds in the order decisions release them, the longest due first, at most
# ``CARD_EXPIRE_BATCH`` (the ``?`` after LIMIT): one range of the ``holds_by_card`` index.
_DUE_FOR_CARD = (
    "SELECT {columns} FROM holds WHERE card_account_id = ? AND status = 'pending'"
    " AND expires_at_ms <= ? ORDER BY expires_at_ms, id LIMIT ?"
)


@dataclass(frozen=True)
class Hold:
    """One authorization hold and what has happened against it."""

    hold_id: str
    card_account_id: str
    merchant_account_id: str
    xid: bytes
    auth_rrpid: bytes
    currency: int
    amount: int
    pending: int
    captured: int
    capture_reversed: int
    credited: int
    credit_reversed: int
    status: str
    """``pending``, ``closed`` or ``expired`` (as of the time it was read)."""
    expires_at_ms: int
    created_at_ms: int

    @property
    def refundable(self) -> int:
        """What may still be credited back: captured net less refunded net."""
        return (self.captured - self.capture_reversed) - (self.credited - self.credit_reversed)

    @property
    def still_authorized(self) -> int:
        """What the authorization stands at: captured, plus what is held unless expired."""
        return self.captured + (0 if self.status == "expired" else self.pending)


def is_expired(hold: Row, now_ms: int) -> bool:
    """True if the hold has expired, whether or not the sweep has posted it yet."""
    if hold["status"] == "expired":
        return True
    return hold["status"] == "pending" and int(hold["expires_at_ms"]) <= now_ms


def still_authorized(hold: Row, now_ms: int) -> int:
    """``Hold.still_authorized`` of a ``holds`` row, as of ``now_ms``."""
    return hold_from_row(hold, now_ms).still_authorized


def hold_from_row(row: Row, now_ms: int) -> Hold:
    """A ``Hold`` from a ``holds`` row, its status as of ``now_ms``."""
    return Hold(
        hold_id=str(row["id"]),
        card_account_id=str(row["card_account_id"]),
        merchant_account_id=str(row["merchant_account_id"]),
        xid=bytes(row["xid"]),
        auth_rrpid=bytes(row["auth_rrpid"]),
        currency=int(row["currency"]),
        amount=int(row["amount"]),
        pending=int(row["pending"]),
        captured=int(row["captured"]),
        capture_reversed=int(row["capture_reversed"]),
        credited=int(row["credited"]),
        credit_reversed=int(row["credit_reversed"]),
        status="expired" if is_expired(row, now_ms) else str(row["status"]),
        expires_at_ms=int(row["expires_at_ms"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def due_for_card(tx: Transaction, card_id: str, now_ms: int) -> list[Row]:
    """The due holds a decision at ``now_ms`` releases before it counts the card's credit,
    locked (call it holding the card's lock, ``store``)."""
    return tx.all(
        _DUE_FOR_CARD.format(columns="*") + tx.row_lock,
        card_id,
        now_ms,
        CARD_EXPIRE_BATCH,
    )


def releasable_for_card(tx: Transaction, card_id: str, now_ms: int) -> int:
    """What ``due_for_card``'s holds hold: what a decision at ``now_ms`` would release
    before counting the card's credit (a read)."""
    row = tx.one(
        "SELECT COALESCE(SUM(pending), 0) AS due FROM"  # noqa: S608  fixed text, bound values
        f" ({_DUE_FOR_CARD.format(columns='pending')}) AS due_holds",
        card_id,
        now_ms,
        CARD_EXPIRE_BATCH,
    )
    return 0 if row is None else int(row["due"])


def lock_hold(tx: Transaction, hold_id: str) -> Row | None:
    """Read a hold, locking it until commit; lock its card account first (see ``store``)."""
    return tx.one(f"SELECT * FROM holds WHERE id = ?{tx.row_lock}", hold_id)  # noqa: S608  lock suffix only


def hold_by_id(tx: Transaction, hold_id: str, now_ms: int) -> Hold:
    """A hold by id; raise UnknownHold."""
    row = tx.one("SELECT * FROM holds WHERE id = ?", hold_id)
    if row is None:
        raise UnknownHold(f"no hold {echoed(hold_id)}")
    return hold_from_row(row, now_ms)


_WRITABLE = frozenset(
    {"amount", "pending", "captured", "capture_reversed", "credited", "credit_reversed", "status"}
)


def update_hold(tx: Transaction, hold: Row, **changes: int | str) -> None:
    """Write new figures to a locked hold row (column names from this fixed set only)."""
    unknown = set(changes) - _WRITABLE
    if unknown:
        raise ValueError(f"not a writable hold column: {sorted(unknown)}")
    assignments = ", ".join(f"{column} = ?" for column in changes)
    tx.run(f"UPDATE holds SET {assignments} WHERE id = ?", *changes.values(), hold["id"])  # noqa: S608
