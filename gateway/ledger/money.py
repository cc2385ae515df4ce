"""The ledger's money operations: authorizations, settlement postings and batch admin.

Each is idempotent on the RRPID: it takes ``rrpid``, ``request_digest`` and ``respond``,
and may take ``checked_at_ms``, the moment the caller checked the request, which is kept
with the decision so that an answer built after a failure is checked as of it.
The decision is committed first; then ``respond`` gets the ``Outcome``, in the caller's
thread and outside any transaction, and returns the signed response bytes; the ledger
stores them under the RRPID and returns them only once they are durably committed
(``idempotency`` says why in two steps, and what a failure between them leaves). A retry
with the same RRPID and digest returns the stored bytes (or answers the stored decision)
and decides nothing; the same RRPID with another digest raises RrpidReused.

These come from SET messages, and change with the protocol; the account admin and the
books that ``Ledger`` keeps in ``ledger`` come from the bank's own tooling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from gateway.ledger import accounts, authorization, batches, idempotency, settlement
from gateway.ledger.batches import BatchPage, BatchReport
from gateway.ledger.errors import AnswerNotStored, InvalidRequest
from gateway.ledger.identifiers import new_ordered_id
from gateway.ledger.limits import (
    check_amount,
    check_bytes,
    check_currency,
    check_flag,
    check_hold_expiry,
    check_items,
    check_moment,
    check_optional_text,
    check_page,
    check_text,
)
from gateway.ledger.outcomes import (
    GATEWAY_DECLINES,
    BatchSummary,
    Decline,
    Declined,
    Outcome,
    PrebuiltApproval,
    Responder,
    Unanswered,
)
from gateway.ledger.pan import LedgerKeys, pan_index, validate_pan
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem
from gateway.ledger.store import LedgerStore, Transaction

if TYPE_CHECKING:
    from gateway.ledger.ledger import Clock, LedgerConfig


def new_hold_id() -> str:
    """A fresh authorization hold id (what ``Ledger.authorize`` makes when given none);
    time-ordered, so the holds' indexes grow at one end (``identifiers``)."""
    return new_ordered_id("hold")


# Like every operation the ledger hands its store, a gateway decline is a ``partial`` of a
# module-level function, never a lambda, so it can travel to the ledger service by value
# (``wire``, which is why this module is among its ``SHIPPED_MODULES``).


def _given(tx: Transaction, *, outcome: Outcome) -> Outcome:
    return outcome


def _check_prebuilt(prebuilt: object, hold_id: str) -> None:
    if not isinstance(prebuilt, PrebuiltApproval):
        raise InvalidRequest("prebuilt must be a PrebuiltApproval")
    if prebuilt.hold_id != hold_id:
        raise InvalidRequest("the prebuilt approval names another hold id")
    if not isinstance(prebuilt.response, bytes) or not prebuilt.response:
        raise InvalidRequest("the prebuilt approval's response must be non-empty bytes")


class MoneyOperations:
    """``Ledger``'s RRPID-keyed operations and the batch reads that go with them."""

    # ``Ledger`` sets these. It inherits the operations rather than delegating to them so
    # that each public signature is written once.
    _store: LedgerStore
    _keys: LedgerKeys
    _config: LedgerConfig
    _clock: Clock

    # Money operations, idempotent on the RRPID.

    def _once(
        self,
        *,
        rrpid: bytes,
        request_digest: bytes,
        now_ms: int,
        checked_at_ms: int | None,
        decide: Callable[[Transaction], Outcome],
        respond: Responder,
        prebuilt: PrebuiltApproval | None = None,
    ) -> bytes:
        """The answer to this request: stored, or decided now and answered by ``respond``.

        Once the decision is committed, any failure to build or store its answer is
        AnswerNotStored: the caller must not report the request as refused.
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        if checked_at_ms is not None:
            check_moment("checked_at_ms", checked_at_ms)
        recorded = self._store.execute(
            partial(
                idempotency.decide_once,
                rrpid=rrpid,
                request_digest=request_digest,
                now_ms=now_ms,
                checked_at_ms=checked_at_ms,
                decide=decide,
                prebuilt=prebuilt,
            )
        )
        if isinstance(recorded, bytes):
            return recorded
        # Committed and unanswered: sign here, in the caller's thread, holding nothing.
        try:
            response = respond(recorded.outcome)
            if not isinstance(response, bytes):
                raise TypeError(f"respond must return bytes, not {type(response).__name__}")
            return self._store.execute(
                partial(
                    idempotency.store_answer,
                    rrpid=rrpid,
                    request_digest=request_digest,
                    response=response,
                )
            )
        except Exception as exc:
            raise AnswerNotStored(
                f"decided, but its answer was not stored ({type(exc).__name__})"
            ) from exc

    def authorize(
        self,
        *,
        pan: str,
        pan_expiry: str,
        amount: int,
        currency: int,
        merchant_id: str,
        xid: bytes,
        pi_digest: bytes,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
        capture_now: bool = False,
        hold_expires_at_ms: int | None = None,
        hold_id: str | None = None,
        prebuilt: PrebuiltApproval | None = None,
    ) -> bytes:
        """Decide an authorization (Authorized or Declined); raise PiPreviouslyUsed on replay.

        ``pan_expiry`` is the expiry in the cardholder's PAN data (YYYYMM); it must equal
        the one on file. ``capture_now`` captures the whole amount at once (a sale).
        ``prebuilt`` is the approval's answer built ahead, for ``hold_id``: when it fits
        the outcome, the authorization costs one write transaction instead of two.
        """
        validate_pan(pan)
        accounts.validate_expiry(pan_expiry, "pan_expiry")
        check_amount("amount", amount)
        check_currency(currency)
        check_text("merchant_id", merchant_id)
        check_bytes("xid", xid)
        check_bytes("pi_digest", pi_digest)
        check_flag("capture_now", capture_now)
        # The caller may choose the hold id (from ``new_hold_id``) so it can build the
        # approval's response before the transaction, off the single writer thread.
        if hold_id is None:
            hold_id = new_hold_id()
        else:
            check_text("hold_id", hold_id)
        if prebuilt is not None:
            _check_prebuilt(prebuilt, hold_id)
        now = self._clock()
        expires = now + self._config.hold_lifetime_ms
        if hold_expires_at_ms is not None:
            check_hold_expiry(hold_expires_at_ms, now)
            expires = hold_expires_at_ms
        index = pan_index(self._keys, pan)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            prebuilt=prebuilt,
            decide=partial(
                authorization.authorize,
                pan_index=index,
                pan_expiry=pan_expiry,
                amount=amount,
                currency=currency,
                merchant_id=merchant_id,
                xid=xid,
                pi_digest=pi_digest,
                rrpid=rrpid,
                hold_id=hold_id,
                expires_at_ms=expires,
                capture_now=capture_now,
                now_ms=now,
            ),
        )

    def decline(
        self,
        reason: Decline,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Answer a request with a decline the gateway decided (AMOUNT_MISMATCH), idempotently.

        The Declined outcome's response is stored under the RRPID like any other, so a
        retry gets the same bytes and the RRPID cannot be reused for another request.
        Nothing else changes: no hold, and the payment instruction is not used up (the
        issuer never decided on it).
        """
        if reason not in GATEWAY_DECLINES:
            raise InvalidRequest(f"the gateway does not decide {reason.value}: the issuer does")
        outcome = Declined(reason)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=self._clock(),
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(_given, outcome=outcome),
        )

    def reverse_authorization(
        self,
        *,
        merchant_id: str,
        hold_id: str,
        new_amount: int,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Lower an authorization to ``new_amount`` (0 reverses it in full): AuthorizationReversed,
        or ReversalDeclined saying what the authorization still stands at."""
        check_text("merchant_id", merchant_id)
        check_text("hold_id", hold_id)
        check_amount("new_amount", new_amount, allow_zero=True)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(
                authorization.reverse_authorization,
                merchant_id=merchant_id,
                hold_id=hold_id,
                new_amount=new_amount,
                now_ms=now,
            ),
        )

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

    def stored_response(self, rrpid: bytes, request_digest: bytes) -> bytes | Unanswered | None:
        """What the ledger holds for exactly this request, if it was decided before: the
        stored answer, or ``Unanswered`` when the decision's answer was never stored.

        Lets the gateway answer a retry whose checks no longer pass (its date has aged
        out of the freshness window) as it answered, or would have answered, the first
        time. Raises RrpidReused when the RRPID was used for another request.
        """
        check_bytes("rrpid", rrpid)
        check_bytes("request_digest", request_digest)
        return self._store.read(
            partial(idempotency.lookup, rrpid=rrpid, request_digest=request_digest)
        )

    # Settlement batches.

    def open_batch(
        self,
        merchant_id: str,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Open a batch for the merchant (BatchOutcome, or Declined BATCH_ALREADY_OPEN)."""
        check_text("merchant_id", merchant_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(batches.open_for_merchant, merchant_id=merchant_id, now_ms=now),
        )

    def close_batch(
        self,
        merchant_id: str,
        batch_id: str | None = None,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Close the named batch, or the open one (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(
                batches.close_for_merchant, merchant_id=merchant_id, batch_id=batch_id, now_ms=now
            ),
        )

    def purge_batch(
        self,
        merchant_id: str,
        batch_id: str,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Retire a closed batch's detail (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        check_text("batch_id", batch_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(batches.purge_for_merchant, merchant_id=merchant_id, batch_id=batch_id),
        )

    def batch_summary(self, merchant_id: str, batch_id: str | None = None) -> BatchSummary:
        """A batch's totals per kind (the open batch by default); raise UnknownBatch."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        return self._store.read(
            partial(batches.summary_for_merchant, merchant_id=merchant_id, batch_id=batch_id)
        )

    def batch_report(
        self,
        merchant_id: str,
        batch_id: str | None = None,
        *,
        starting_point: int = 0,
        max_items: int = 100,
    ) -> BatchReport:
        """A batch's totals and one page of its transactions, from one snapshot: a posting
        committed meanwhile is in both or in neither. Raise UnknownBatch."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        check_page(starting_point, max_items)
        return self._store.read(
            partial(
                batches.report_for_merchant,
                merchant_id=merchant_id,
                batch_id=batch_id,
                starting_point=starting_point,
                max_items=max_items,
            )
        )

    def batch_details(
        self, merchant_id: str, batch_id: str, *, starting_point: int = 0, max_items: int = 100
    ) -> BatchPage:
        """One page of a batch's transactions after ``starting_point`` (0: from the start)."""
        check_text("merchant_id", merchant_id)
        check_text("batch_id", batch_id)
        check_page(starting_point, max_items)
        return self._store.read(
            partial(
                batches.details_for_merchant,
                merchant_id=merchant_id,
                batch_id=batch_id,
                starting_point=starting_point,
                max_items=max_items,
            )
        )
