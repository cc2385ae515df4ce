"""``Ledger``'s settlement postings: capture, credit, and the reversal of each.

Idempotent on the RRPID as ``money`` says; the rules they run are ``settlement``'s, each
over the request's items, every item decided on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from gateway.ledger import settlement
from gateway.ledger.limits import check_amount, check_items, check_text
from gateway.ledger.money import MoneyOperations
from gateway.ledger.outcomes import Outcome, Responder
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem


class SettlementOperations(MoneyOperations):
    """``Ledger``'s captures, credits and their reversals."""

    def _post_items(
        self,
        rule: Callable[..., Outcome],
        item_class: type[CaptureItem | CreditItem | ReversalItem],
        merchant_id: str,
        items: Sequence[CaptureItem] | Sequence[CreditItem] | Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None,
    ) -> bytes:
        """Run one of the settlement rules over ``items`` (each an ``item_class``) once
        per RRPID."""
        check_text("merchant_id", merchant_id)
        check_items(items, item_class)
        for item in items:
            if isinstance(item, ReversalItem) and item.amount is not None:
                check_amount("amount", item.amount)
        now = self._clock()
        frozen = tuple(items)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(rule, merchant_id=merchant_id, items=frozen, rrpid=rrpid, now_ms=now),
        )

    def capture(
        self,
        *,
        merchant_id: str,
        items: Sequence[CaptureItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Capture each item of its hold (PostingOutcome)."""
        return self._post_items(
            settlement.capture,
            CaptureItem,
            merchant_id,
            items,
            rrpid,
            request_digest,
            respond,
            checked_at_ms,
        )

    def reverse_capture(
        self,
        *,
        merchant_id: str,
        items: Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Undo each named capture in full (PostingOutcome)."""
        return self._post_items(
            settlement.reverse_capture,
            ReversalItem,
            merchant_id,
            items,
            rrpid,
            request_digest,
            respond,
            checked_at_ms,
        )

    def credit(
        self,
        *,
        merchant_id: str,
        items: Sequence[CreditItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Refund each item to the card of its hold (PostingOutcome)."""
        return self._post_items(
            settlement.credit,
            CreditItem,
            merchant_id,
            items,
            rrpid,
            request_digest,
            respond,
            checked_at_ms,
        )

    def reverse_credit(
        self,
        *,
        merchant_id: str,
        items: Sequence[ReversalItem],
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Undo each named credit in full (PostingOutcome)."""
        return self._post_items(
            settlement.reverse_credit,
            ReversalItem,
            merchant_id,
            items,
            rrpid,
            request_digest,
            respond,
            checked_at_ms,
        )
