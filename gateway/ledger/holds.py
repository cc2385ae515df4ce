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
once fully captured or released, ``expired`` once the expiry released the rest. A hold
past its ``expires_at_ms`` counts as expired at once, before the sweep posts its release.

What the authorization stands at (``still_authorized``) is what was captured plus what is
still held: ``amount`` while the hold lives, only the captured part once it has expired.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.errors import UnknownHold
from gateway.ledger.store import Row, Transaction


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


def lock_hold(tx: Transaction, hold_id: str) -> Row | None:
    """Read a hold, locking it until commit; lock its card account first (see ``store``)."""
    return tx.one(f"SELECT * FROM holds WHERE id = ?{tx.row_lock}", hold_id)  # noqa: S608  lock suffix only


def hold_by_id(tx: Transaction, hold_id: str, now_ms: int) -> Hold:
    """A hold by id; raise UnknownHold."""
    row = tx.one("SELECT * FROM holds WHERE id = ?", hold_id)
    if row is None:
        raise UnknownHold(f"no hold {hold_id}")
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
