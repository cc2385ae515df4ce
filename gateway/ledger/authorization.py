"""Authorization: decide, hold, release and expire.

``authorize`` is the issuer's decision on one payment instruction. In order:

1. the PI replay store: an XID seen before raises PiPreviouslyUsed and changes nothing;
   otherwise the XID is recorded, whatever the decision (a PI is good for one decision);
2. the merchant must have an account (else UnknownMerchant: a gateway configuration error);
3. the card is found by PAN index and locked; declines, first match wins: unknown
   account, closed, blocked, expired card (expiry month over, or the PAN data's expiry is
   not the one on file), currency mismatch (card or merchant), insufficient funds;
4. approved: a hold card -> merchant for the amount, until ``expires_at_ms``; for a sale
   (``capture_now``) the whole hold is captured at once into the merchant's open batch.

``reverse_authorization`` lowers an authorization to a new amount (zero reverses it in
full), releasing the difference; it cannot go below what is already captured. A refusal
says what the authorization still stands at (``ReversalDeclined``).
Expiry (``expiry``): an authorization that passes every check but the credit releases
its card's due holds (a batch of them, having locked their merchants and its own in id
order), then counts what the card holds as it stands; one refused before that releases
nothing. An authorization reversal that finds its hold expired releases it;
``expiry.expire_holds`` sweeps the holds no decision touched.
"""

from __future__ import annotations

from gateway.ledger import accounts, books, expiry
from gateway.ledger.accounts import AccountStatus
from gateway.ledger.books import Phase, TransferKind
from gateway.ledger.errors import PiPreviouslyUsed, StoreError
from gateway.ledger.holds import is_expired, lock_hold, still_authorized, update_hold
from gateway.ledger.outcomes import (
    AuthorizationReversed,
    Authorized,
    Decline,
    Declined,
    Posted,
    ReversalDeclined,
)
from gateway.ledger.retention import pi_dead_after_ms
from gateway.ledger.settlement import CaptureItem, capture_hold
from gateway.ledger.store import Row, Transaction

_STATUS_DECLINES = {
    AccountStatus.CLOSED.value: Decline.CLOSED_ACCOUNT,
    AccountStatus.BLOCKED.value: Decline.BLOCKED_ACCOUNT,
}


def _decline_reason(
    card: Row, merchant: Row, *, pan_expiry: str, currency: int, now_ms: int
) -> Decline | None:
    """Why the card cannot have this authorization, whatever its credit."""
    status_decline = _STATUS_DECLINES.get(str(card["status"]))
    if status_decline is not None:
        return status_decline
    if accounts.card_expired(str(card["expiry"]), now_ms) or pan_expiry != card["expiry"]:
        return Decline.EXPIRED_CARD
    if currency != int(card["currency"]) or currency != int(merchant["currency"]):
        return Decline.CURRENCY_MISMATCH
    return None


def authorize(
    tx: Transaction,
    *,
    pan_index: bytes,
    pan_expiry: str,
    amount: int,
    currency: int,
    merchant_id: str,
    xid: bytes,
    pi_digest: bytes,
    rrpid: bytes,
    hold_id: str,
    expires_at_ms: int,
    capture_now: bool,
    now_ms: int,
) -> Authorized | Declined:
    """Decide one authorization and, if approved, place its hold."""
    recorded = tx.run(
        "INSERT INTO pi_uses (xid, pi_digest, rrpid, used_at_ms, dead_after_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (xid) DO NOTHING",
        xid,
        pi_digest,
        rrpid,
        now_ms,
        pi_dead_after_ms(pan_expiry),  # the XID's life (``retention``)
    )
    if recorded == 0:
        raise PiPreviouslyUsed("the payment instruction's XID was already used")
    merchant = accounts.merchant_row(tx, merchant_id)  # UnknownMerchant undoes the record
    card = accounts.lock_card_by_pan_index(tx, pan_index)
    if card is None:
        return Declined(Decline.UNKNOWN_ACCOUNT)
    card_id = str(card["id"])
    reason = _decline_reason(
        card, merchant, pan_expiry=pan_expiry, currency=currency, now_ms=now_ms
    )
    if reason is not None:
        return Declined(reason)  # before counting the credit: no release (``expiry``)
    due = expiry.DueReleases(tx, [card_id], merchant_account_id=str(merchant["id"]), now_ms=now_ms)
    if amount > accounts.available_credit(card, due.count(card)):
        return Declined(Decline.INSUFFICIENT_FUNDS)  # the releases it counted stand
    tx.run(
        "INSERT INTO holds (id, card_account_id, merchant_account_id, xid, auth_rrpid, currency,"
        " amount, pending, status, expires_at_ms, created_at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        hold_id,
        card_id,
        merchant["id"],
        xid,
        rrpid,
        currency,
        amount,
        amount,
        expires_at_ms,
        now_ms,
    )
    books.post_transfer(
        tx,
        kind=TransferKind.AUTHORIZATION,
        phase=Phase.PENDING,
        debit_account_id=card_id,
        credit_account_id=str(merchant["id"]),
        amount=amount,
        currency=currency,
        now_ms=now_ms,
        hold_id=hold_id,
        rrpid=rrpid,
    )
    captured: Posted | None = None
    if capture_now:
        locked_merchant = accounts.merchant_row(tx, merchant_id, lock=True)
        hold = lock_hold(tx, hold_id)
        if hold is None:
            raise StoreError(f"the hold {hold_id} inserted in this transaction is missing")
        sale = capture_hold(
            tx,
            merchant=locked_merchant,
            hold=hold,
            item=CaptureItem(hold_id=hold_id, amount=amount, currency=currency),
            rrpid=rrpid,
            now_ms=now_ms,
        )
        # The hold was made for this amount a moment ago and the open batch is found or
        # opened on the spot, so nothing can decline this capture.
        if not isinstance(sale, Posted):
            raise StoreError(f"the capture of the hold {hold_id} just made was refused: {sale}")
        captured = sale
    return Authorized(
        hold_id=hold_id,
        card_account_id=card_id,
        amount=amount,
        currency=currency,
        expires_at_ms=expires_at_ms,
        capture=captured,
    )


def reverse_authorization(
    tx: Transaction, *, merchant_id: str, hold_id: str, new_amount: int, now_ms: int
) -> AuthorizationReversed | ReversalDeclined:
    """Lower the authorized amount to ``new_amount`` and release the difference."""
    merchant = accounts.merchant_row(tx, merchant_id)
    ref = tx.one("SELECT card_account_id, merchant_account_id FROM holds WHERE id = ?", hold_id)
    if ref is None or ref["merchant_account_id"] != merchant["id"]:
        return ReversalDeclined(Decline.UNKNOWN_HOLD, authorized=0)
    accounts.lock_card(tx, str(ref["card_account_id"]))
    hold = lock_hold(tx, hold_id)
    if hold is None:  # holds are never deleted
        raise StoreError(f"the hold {hold_id} found in this transaction is missing")
    if is_expired(hold, now_ms):
        if hold["status"] == "pending":
            expiry.release(tx, hold, now_ms)  # this decision saw it expired: so will all later
        return ReversalDeclined(Decline.HOLD_EXPIRED, still_authorized(hold, now_ms))
    amount, captured = int(hold["amount"]), int(hold["captured"])
    if not captured <= new_amount < amount:
        return ReversalDeclined(Decline.INVALID_AMOUNT, still_authorized(hold, now_ms))
    released = amount - new_amount
    books.post_transfer(
        tx,
        kind=TransferKind.AUTHORIZATION_REVERSAL,
        phase=Phase.VOID,
        debit_account_id=str(hold["card_account_id"]),
        credit_account_id=str(merchant["id"]),
        amount=released,
        currency=int(hold["currency"]),
        now_ms=now_ms,
        hold_id=hold_id,
    )
    pending = int(hold["pending"]) - released
    update_hold(
        tx,
        hold,
        amount=new_amount,
        pending=pending,
        status="pending" if pending > 0 else "closed",
    )
    return AuthorizationReversed(
        hold_id=hold_id, amount=new_amount, released=released, currency=int(hold["currency"])
    )
