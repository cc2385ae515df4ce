"""``Ledger``'s authorization operations: authorize, a gateway's decline, and reversal.

Idempotent on the RRPID as ``money`` says; the rules they run are ``authorization``'s.
"""

from __future__ import annotations

from functools import partial

from gateway.ledger import accounts, authorization
from gateway.ledger.errors import LedgerMisuse
from gateway.ledger.identifiers import new_ordered_id
from gateway.ledger.limits import (
    check_amount,
    check_bytes,
    check_currency,
    check_flag,
    check_hold_expiry,
    check_text,
)
from gateway.ledger.money import MoneyOperations, decided_by_caller
from gateway.ledger.outcomes import GATEWAY_DECLINES, Decline, Declined, PrebuiltApproval, Responder
from gateway.ledger.pan import pan_index, validate_pan


def new_hold_id() -> str:
    """A fresh authorization hold id (what ``Ledger.authorize`` makes when given none);
    time-ordered, so the holds' indexes grow at one end (``identifiers``)."""
    return new_ordered_id("hold")


def _check_prebuilt(prebuilt: object, hold_id: str) -> None:
    if not isinstance(prebuilt, PrebuiltApproval):
        raise LedgerMisuse("prebuilt must be a PrebuiltApproval")
    if prebuilt.hold_id != hold_id:
        raise LedgerMisuse("the prebuilt approval names another hold id")
    if not isinstance(prebuilt.response, bytes) or not prebuilt.response:
        raise LedgerMisuse("the prebuilt approval's response must be non-empty bytes")


class AuthorizationOperations(MoneyOperations):
    """``Ledger``'s authorizations, gateway declines and authorization reversals."""

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
            raise LedgerMisuse(f"the gateway does not decide {reason.value}: the issuer does")
        outcome = Declined(reason)
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=self._clock(),
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(decided_by_caller, outcome=outcome),
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
