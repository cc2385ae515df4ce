"""Settlement: captures, credits (refunds) and their reversals, each filed in a batch.

    capture           posts part or all of a hold, card -> merchant; the sum of captures
                      never exceeds the authorized amount, and none after expiry
    capture reversal  undoes one capture in full, merchant -> card; refused once that
                      capture has been refunded (refund the refund first), or when the
                      request names another amount than the capture's
    credit            refunds merchant -> card, at most captured net less refunded net
    credit reversal   undoes one credit in full, card -> merchant; refused if the card
                      cannot absorb it (no operation takes a card over its limit), or
                      when the request names another amount than the credit's

A request carries one or more items, each decided on its own (``PostingOutcome``): one
item declined does not stop the others. Captures and credits are known afterwards by
(hold id, request RRPID), which is how reversals name the original; so one request may
name each hold only once.

Locks are taken in the order ``store`` documents: every card the request touches
(sorted), then the merchant, then each hold as its item comes.

A hold past its expiry is released by the decision that finds it so (``expiry``): a
capture declines HOLD_EXPIRED and posts the release, so no later capture, whatever its
clock, spends credit an authorization may already have been given. A credit reversal
counts its cards' available credit, so it releases a card's due holds as an item comes to
count it, after that item's own checks (original, amount, batch): an item refused by one
of those releases nothing. The merchants of those holds are locked with its own once the
cards are, before any item (they may change too, and merchants are locked in id order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.ledger import accounts, batches, books, expiry
from gateway.ledger.books import Phase, TransferKind
from gateway.ledger.errors import StoreError
from gateway.ledger.holds import is_expired, update_hold
from gateway.ledger.outcomes import (
    Decline,
    Declined,
    Posted,
    PostingOutcome,
    TransactionKind,
)
from gateway.ledger.store import Row, Transaction


@dataclass(frozen=True)
class CaptureItem:
    """Capture ``amount`` of a hold (into ``batch_id``, or the merchant's open batch)."""

    hold_id: str
    amount: int
    currency: int
    batch_id: str | None = None


@dataclass(frozen=True)
class CreditItem:
    """Refund ``amount`` of what was captured on a hold."""

    hold_id: str
    amount: int
    currency: int
    batch_id: str | None = None


@dataclass(frozen=True)
class ReversalItem:
    """Undo the capture or credit made on a hold by the request ``original_rrpid``.

    ``amount`` is what the merchant asked to undo: a reversal is always of the whole
    original, so another amount is refused (INVALID_AMOUNT) rather than overridden.
    """

    hold_id: str
    original_rrpid: bytes
    batch_id: str | None = None
    amount: int | None = None


def _lock_cards(tx: Transaction, merchant_account_id: str, hold_ids: Sequence[str]) -> list[str]:
    """Lock every card the request touches, in id order, before any hold or merchant;
    return their ids."""
    marks = ", ".join("?" for _ in hold_ids)
    rows = tx.all(
        f"SELECT DISTINCT card_account_id FROM holds WHERE id IN ({marks})"  # noqa: S608
        " AND merchant_account_id = ?",
        *hold_ids,
        merchant_account_id,
    )
    card_ids = sorted(str(r["card_account_id"]) for r in rows)
    for card_id in card_ids:
        accounts.lock_card(tx, card_id)
    return card_ids


def _own_hold(tx: Transaction, merchant: Row, hold_id: str) -> Row | None:
    """The locked hold if it exists and belongs to this merchant (others' look unknown).

    The merchant is part of the locking read: a row lock covers only the rows a query
    returns, so another merchant's hold is never locked (its card is not among those
    ``_lock_cards`` took, and the lock would be out of the documented order).
    """
    return tx.one(
        f"SELECT * FROM holds WHERE id = ? AND merchant_account_id = ?{tx.row_lock}",  # noqa: S608  lock suffix only
        hold_id,
        merchant["id"],
    )


def _post(
    tx: Transaction,
    *,
    kind: TransactionKind,
    phase: Phase,
    hold: Row,
    merchant: Row,
    to_merchant: bool,
    amount: int,
    rrpid: bytes,
    requested_batch: str | None,
    now_ms: int,
    reverses_id: int | None = None,
) -> Posted | Declined:
    """File one settlement transaction in a batch and journal it."""
    batch = batches.batch_for_posting(tx, str(merchant["id"]), requested_batch, now_ms)
    if isinstance(batch, Decline):
        return Declined(batch)
    seq = batches.next_seq(tx, batch)
    card, merchant_id = str(hold["card_account_id"]), str(merchant["id"])
    books.post_transfer(
        tx,
        kind=TransferKind(kind.value),
        phase=phase,
        debit_account_id=card if to_merchant else merchant_id,
        credit_account_id=merchant_id if to_merchant else card,
        amount=amount,
        currency=int(hold["currency"]),
        now_ms=now_ms,
        hold_id=str(hold["id"]),
        rrpid=rrpid,
        reverses_id=reverses_id,
        batch_id=batch,
        batch_seq=seq,
    )
    return Posted(
        kind=kind,
        hold_id=str(hold["id"]),
        amount=amount,
        currency=int(hold["currency"]),
        batch_id=batch,
        batch_seq=seq,
    )


def capture_hold(
    tx: Transaction,
    *,
    merchant: Row,
    hold: Row,
    item: CaptureItem,
    rrpid: bytes,
    now_ms: int,
) -> Posted | Declined:
    """Capture part or all of a locked hold (also used by a sale's immediate capture)."""
    if item.currency != int(hold["currency"]):
        return Declined(Decline.CURRENCY_MISMATCH)
    if is_expired(hold, now_ms):
        if hold["status"] == "pending":
            expiry.release(tx, hold, now_ms)  # this decision saw it expired: so will all later
        return Declined(Decline.HOLD_EXPIRED)
    if item.amount > int(hold["pending"]):
        return Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION)
    result = _post(
        tx,
        kind=TransactionKind.CAPTURE,
        phase=Phase.POST,
        hold=hold,
        merchant=merchant,
        to_merchant=True,
        amount=item.amount,
        rrpid=rrpid,
        requested_batch=item.batch_id,
        now_ms=now_ms,
    )
    if isinstance(result, Posted):
        pending = int(hold["pending"]) - item.amount
        update_hold(
            tx,
            hold,
            captured=int(hold["captured"]) + item.amount,
            pending=pending,
            status="pending" if pending > 0 else "closed",
        )
    return result


ItemT = TypeVar("ItemT", "CaptureItem", "CreditItem", "ReversalItem")


def _each_item(
    tx: Transaction,
    merchant_id: str,
    items: Sequence[ItemT],
    post_one: Callable[[Row, ItemT], Posted | Declined],
) -> PostingOutcome:
    """Lock in the documented order (cards, then the merchant, then each item's hold),
    then post each item."""
    merchant = accounts.merchant_row(tx, merchant_id)
    _lock_cards(tx, str(merchant["id"]), [i.hold_id for i in items])
    merchant = accounts.merchant_row(tx, merchant_id, lock=True)
    return PostingOutcome(tuple(post_one(merchant, item) for item in items))


def capture(
    tx: Transaction, *, merchant_id: str, items: Sequence[CaptureItem], rrpid: bytes, now_ms: int
) -> PostingOutcome:
    """Capture each item's amount of its hold."""

    def one(merchant: Row, item: CaptureItem) -> Posted | Declined:
        hold = _own_hold(tx, merchant, item.hold_id)
        if hold is None:
            return Declined(Decline.UNKNOWN_HOLD)
        return capture_hold(tx, merchant=merchant, hold=hold, item=item, rrpid=rrpid, now_ms=now_ms)

    return _each_item(tx, merchant_id, items, one)


def credit(
    tx: Transaction, *, merchant_id: str, items: Sequence[CreditItem], rrpid: bytes, now_ms: int
) -> PostingOutcome:
    """Refund each item's amount to the card of its hold."""
    return _each_item(
        tx, merchant_id, items, lambda m, item: _credit_one(tx, m, item, rrpid, now_ms)
    )


def _credit_one(
    tx: Transaction, merchant: Row, item: CreditItem, rrpid: bytes, now_ms: int
) -> Posted | Declined:
    hold = _own_hold(tx, merchant, item.hold_id)
    if hold is None:
        return Declined(Decline.UNKNOWN_HOLD)
    if item.currency != int(hold["currency"]):
        return Declined(Decline.CURRENCY_MISMATCH)
    refundable = (int(hold["captured"]) - int(hold["capture_reversed"])) - (
        int(hold["credited"]) - int(hold["credit_reversed"])
    )
    if item.amount > refundable:
        return Declined(Decline.AMOUNT_EXCEEDS_CAPTURED)
    result = _post(
        tx,
        kind=TransactionKind.CREDIT,
        phase=Phase.SINGLE,
        hold=hold,
        merchant=merchant,
        to_merchant=False,
        amount=item.amount,
        rrpid=rrpid,
        requested_batch=item.batch_id,
        now_ms=now_ms,
    )
    if isinstance(result, Posted):
        update_hold(tx, hold, credited=int(hold["credited"]) + item.amount)
    return result


_ORIGINAL = (
    "SELECT t.id, t.amount, b.status AS batch_status FROM transfers t"
    " JOIN batches b ON b.id = t.batch_id"
    " WHERE t.hold_id = ? AND t.kind = ? AND t.kind IN ('capture', 'credit') AND t.rrpid = ?"
)


def _original(
    tx: Transaction, hold: Row, kind: TransactionKind, item: ReversalItem
) -> Row | Decline:
    """The capture or credit being reversed, or why it cannot be."""
    # The literal kind list is the predicate of the partial index transfers_by_request:
    # from the bound kind alone the planner cannot tell the index covers the row, and
    # would walk every transfer of the hold instead.
    original = tx.one(
        _ORIGINAL,
        hold["id"],
        kind.value,
        item.original_rrpid,
    )
    if original is None:
        return Decline.UNKNOWN_ORIGINAL
    if original["batch_status"] == "purged":
        return Decline.ORIGINAL_PURGED
    if tx.one("SELECT 1 AS found FROM transfers WHERE reverses_id = ?", original["id"]):
        return Decline.ORIGINAL_REVERSED
    if item.amount is not None and item.amount != int(original["amount"]):
        return Decline.INVALID_AMOUNT
    return original


def reverse_capture(
    tx: Transaction,
    *,
    merchant_id: str,
    items: Sequence[ReversalItem],
    rrpid: bytes,
    now_ms: int,
) -> PostingOutcome:
    """Undo each named capture in full."""
    return _each_item(
        tx, merchant_id, items, lambda m, item: _reverse_capture_one(tx, m, item, rrpid, now_ms)
    )


def _reverse_capture_one(
    tx: Transaction, merchant: Row, item: ReversalItem, rrpid: bytes, now_ms: int
) -> Posted | Declined:
    hold = _own_hold(tx, merchant, item.hold_id)
    if hold is None:
        return Declined(Decline.UNKNOWN_ORIGINAL)
    original = _original(tx, hold, TransactionKind.CAPTURE, item)
    if isinstance(original, Decline):
        return Declined(original)
    amount = int(original["amount"])
    refundable = (int(hold["captured"]) - int(hold["capture_reversed"])) - (
        int(hold["credited"]) - int(hold["credit_reversed"])
    )
    if amount > refundable:
        return Declined(Decline.ORIGINAL_REFUNDED)
    result = _post(
        tx,
        kind=TransactionKind.CAPTURE_REVERSAL,
        phase=Phase.SINGLE,
        hold=hold,
        merchant=merchant,
        to_merchant=False,
        amount=amount,
        rrpid=rrpid,
        requested_batch=item.batch_id,
        now_ms=now_ms,
        reverses_id=int(original["id"]),
    )
    if isinstance(result, Posted):
        update_hold(tx, hold, capture_reversed=int(hold["capture_reversed"]) + amount)
    return result


def reverse_credit(
    tx: Transaction,
    *,
    merchant_id: str,
    items: Sequence[ReversalItem],
    rrpid: bytes,
    now_ms: int,
) -> PostingOutcome:
    """Undo each named credit in full, if the card can absorb it.

    Locks as ``_each_item`` does, and between the cards and the merchant the cards' due
    holds and every merchant they name (``expiry.DueReleases``), released as an item comes
    to count its card's credit.
    """
    merchant = accounts.merchant_row(tx, merchant_id)
    card_ids = _lock_cards(tx, str(merchant["id"]), [i.hold_id for i in items])
    due = expiry.DueReleases(tx, card_ids, merchant_account_id=str(merchant["id"]), now_ms=now_ms)
    merchant = accounts.merchant_row(tx, merchant_id, lock=True)
    return PostingOutcome(
        tuple(_reverse_credit_one(tx, merchant, item, rrpid, now_ms, due) for item in items)
    )


def _reverse_credit_one(
    tx: Transaction,
    merchant: Row,
    item: ReversalItem,
    rrpid: bytes,
    now_ms: int,
    due: expiry.DueReleases,
) -> Posted | Declined:
    hold = _own_hold(tx, merchant, item.hold_id)
    if hold is None:
        return Declined(Decline.UNKNOWN_ORIGINAL)
    original = _original(tx, hold, TransactionKind.CREDIT, item)
    if isinstance(original, Decline):
        return Declined(original)
    # The batch too is the request's own figure, checked before the credit is counted
    # (``expiry``): ``_post`` would refuse it only after the card's due holds were released.
    refused = batches.refusal(tx, str(merchant["id"]), item.batch_id)
    if refused is not None:
        return Declined(refused)
    amount = int(original["amount"])
    card = accounts.lock_card(tx, str(hold["card_account_id"]))  # locked already: as it stands
    if card is None:  # a hold's card account is never deleted
        raise StoreError(f"the card account of the hold {hold['id']} is missing")
    if amount > accounts.available_credit(card, due.count(card)):
        return Declined(Decline.INSUFFICIENT_FUNDS)  # the releases it counted stand
    result = _post(
        tx,
        kind=TransactionKind.CREDIT_REVERSAL,
        phase=Phase.SINGLE,
        hold=hold,
        merchant=merchant,
        to_merchant=True,
        amount=amount,
        rrpid=rrpid,
        requested_batch=item.batch_id,
        now_ms=now_ms,
        reverses_id=int(original["id"]),
    )
    if isinstance(result, Posted):
        update_hold(tx, hold, credit_reversed=int(hold["credit_reversed"]) + amount)
    return result
