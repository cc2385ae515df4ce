"""Authorize: the gateway's processing of an AuthReq, from envelope to signed AuthRes.

The protocol checks are setcore's (SET-PROTOCOL.md 6.2 and 9.3); this module orders them,
asks the issuer ledger for the decision and gives it the answer to store under the RRPID,
so a retry gets the exact signed AuthRes bytes the first call got (the reply's
``auth_res``; its plaintext routing header is dated anew for each reply:
``gateway.ledger.idempotency`` says what is the same). The answer is never signed inside
the ledger's transaction. The decision is counted (``gateway.metrics``) once its answer
is committed; a retry answered from the stored bytes decides nothing and is not counted
again.

How old a PI may be (its signed order date, ``PI_MAX_AGE_MS``) is this gateway's bound;
the check is setcore's (``check_order_date``). A retry of bytes already decided is
answered from the ledger even once its PI is past the bound (``gateway.servicer`` asks
the ledger for the stored answer when a check refuses them, fencing the RRPID when none
is recorded).
"""

from __future__ import annotations

import logging

from gateway import metrics
from gateway.bank import Bank
from gateway.ledger import (
    Authorized,
    Decline,
    Declined,
    Outcome,
    PrebuiltApproval,
    Responder,
    new_hold_id,
)
from gateway.ledger.limits import MAX_AMOUNT
from gateway.outcomes import auth_code_for, resp_reason_for
from setcore.authorization import (
    AuthDecision,
    PaymentInstruction,
    VerifiedAuthRequest,
    amount_agrees,
    build_auth_response,
    check_agreement,
    check_order_date,
    open_auth_request,
    open_payment_instruction,
    seal_cap_token,
)
from setcore.capture import trans_ids_digest
from setcore.freshness import PI_MAX_AGE_MS
from setpay.v1 import authorization_pb2, common_pb2

log = logging.getLogger("setpay.gateway")

# A short, non-secret reference the merchant can quote to the acquirer.
APPROVAL_CODE_CHARS = 6

# How long after the purchase a merchant may have it authorized, ``PI_MAX_AGE_MS``: the
# order date the cardholder signed in the PI (PReqDate) may be this old at most. The life
# of a hold (the ledger's default, ``HOLD_LIFETIME_MS``): long enough for a merchant that
# authorizes after its own checks (fraud review, stock) or a weekend; a PI older than that
# asks for an authorization that, asked at the purchase, would have lapsed by now, on the
# cardholder's consent of then. Defined in ``setcore.freshness``: the merchant reads it
# too, to tell a PI too old from an AuthReq gone stale, both refused MESSAGE_TOO_OLD.


def _cap_token(bank: Bank, request: VerifiedAuthRequest, outcome: Authorized) -> bytes:
    data = authorization_pb2.CapTokenData(
        xid=request.xid,
        auth_rrpid=request.rrpid,
        auth_amt=common_pb2.CurrencyAmount(
            currency=outcome.currency,
            amount=outcome.amount,
            exp10=request.data.auth_req_payload.auth_req_amt.exp10,
        ),
        merchant_id=request.merchant_id,
        merchant_cert_thumb=request.merchant.thumbprint,
        hold_id=outcome.hold_id,
        issued_unix_ms=request.data.auth_tags.auth_rr_tags.date_unix_ms,
        # The TransIDs ``check_agreement`` found equal to the PI's: every capture,
        # reversal or credit on this token must name them (setcore.capture).
        trans_ids_digest=trans_ids_digest(request.data.auth_tags.trans_ids),
    )
    return seal_cap_token(bank.token_key, data)


def decision_for(bank: Bank, request: VerifiedAuthRequest, outcome: Outcome) -> AuthDecision:
    """Turn the ledger's outcome into the AuthRes decision (with a capture token if approved)."""
    asked = request.data.auth_req_payload.auth_req_amt
    if isinstance(outcome, Authorized):
        cap_res = None
        if outcome.capture is not None:
            cap_res = authorization_pb2.CapResPayload(
                cap_code=authorization_pb2.CAP_CODE_SUCCESS,
                cap_amt=asked,
                batch_id=outcome.capture.batch_id,
                batch_sequence_num=outcome.capture.batch_seq,
            )
        return AuthDecision(
            auth_code=authorization_pb2.AUTH_CODE_APPROVED,
            auth_amt=asked,
            approval_code=outcome.hold_id[-APPROVAL_CODE_CHARS:].upper(),
            cap_token=_cap_token(bank, request, outcome),
            cap_res_payload=cap_res,
        )
    if not isinstance(outcome, Declined):
        raise TypeError(f"unexpected outcome {type(outcome).__name__}")
    return AuthDecision(
        auth_code=auth_code_for(outcome.reason),
        auth_amt=common_pb2.CurrencyAmount(currency=asked.currency, amount=0, exp10=asked.exp10),
        resp_reason=resp_reason_for(outcome.reason),
    )


def authorize(bank: Bank, request: authorization_pb2.AuthorizeRequest) -> bytes:
    """Process one AuthReq; the AuthRes bytes (identical on an idempotent retry)."""
    # Each envelope is opened with the key-exchange key it names: the PI may be sealed to
    # an older certificate than the AuthReq around it (``gateway.opening_keys``).
    opening = bank.opening_credentials()
    at = bank.as_of_time  # a datetime made from ``as_of_ms``: made once, used twice
    verified = open_auth_request(request, opening, bank.trust, at=at, now=bank.as_of_ms)
    pi = open_payment_instruction(verified, opening, bank.trust, at=at)
    check_order_date(pi, max_age_ms=PI_MAX_AGE_MS, now=bank.as_of_ms)
    check_agreement(verified, pi)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "AuthReq %s from merchant %s: PI opened, card %s, cardholder certificate %s; "
            "dual signature, account binding, HOD and ids agree (order description unseen)",
            verified.rrpid.hex()[:8], verified.merchant_id, pi.pan.masked,
            pi.cardholder.thumbprint.hex()[:8],
        )  # fmt: skip
    # An amount the ledger could never hold (above MAX_AMOUNT) is declined as an amount
    # error, like one above PurchAmt: the merchant asked it and the cardholder may have
    # signed it, so it is a signed answer to a well-formed request, not a SET Error.
    agrees = (
        amount_agrees(verified, pi)
        and verified.data.auth_req_payload.auth_req_amt.amount <= MAX_AMOUNT
    )
    hold_id = new_hold_id()
    built: dict[bytes, Outcome] = {}  # every answer ``build`` made, by its bytes

    def build(outcome: Outcome) -> bytes:
        response = build_auth_response(
            bank.credentials, verified, decision_for(bank, verified, outcome)
        )
        built[response] = outcome
        return response

    # The usual answer, an approval, is built here, in parallel with other requests, so
    # the ledger only decides and stores it in one write. A decline, a sale (capture_now)
    # or anything unexpected is built by ``build`` once the ledger has decided, outside
    # its transaction, and stored in a second write.
    asked = verified.data.auth_req_payload.auth_req_amt
    prebuilt: PrebuiltApproval | None = None
    if agrees and not verified.data.capture_now:
        likely = Authorized(hold_id, "", asked.amount, asked.currency, 0, None)
        response = build_auth_response(
            bank.credentials, verified, decision_for(bank, verified, likely)
        )
        prebuilt = PrebuiltApproval(hold_id, asked.amount, asked.currency, response)
        built[response] = likely

    digest = verified.request_digest  # computed once, when the request was opened
    if not agrees:
        answer = bank.ledger.decline(
            Decline.AMOUNT_MISMATCH,
            rrpid=verified.rrpid,
            request_digest=digest,
            respond=build,
            checked_at_ms=bank.as_of_ms,
        )
    else:
        answer = _ask_issuer(bank, verified, pi, digest, build, prebuilt, hold_id)
    # The ledger returns only the committed answer. Each answer this call built names
    # this call's fresh hold id or was signed afresh, so no other request's stored bytes
    # can equal it: a match means this call's answer went out, and its decision is
    # counted. A retry answered from bytes stored by an earlier call matches none.
    decided = built.get(answer)
    if decided is not None:
        metrics.authorization_decided(decided)
        if log.isEnabledFor(logging.INFO):
            what = (
                f"declined ({decided.reason.value})"
                if isinstance(decided, Declined)
                else "approved, capture token sealed to the gateway itself"
            )
            log.info("AuthRes %s: %s; signed for merchant %s, naming its request",
                     verified.rrpid.hex()[:8], what, verified.merchant_id)  # fmt: skip
    return answer


def _ask_issuer(
    bank: Bank,
    verified: VerifiedAuthRequest,
    pi: PaymentInstruction,
    digest: bytes,
    respond: Responder,
    prebuilt: PrebuiltApproval | None,
    hold_id: str,
) -> bytes:
    asked = verified.data.auth_req_payload.auth_req_amt
    return bank.ledger.authorize(
        pan=pi.pan.reveal(),
        pan_expiry=pi.expiry,
        amount=asked.amount,
        currency=asked.currency,
        merchant_id=verified.merchant_id,
        xid=verified.xid,
        pi_digest=pi.pi_digest,
        rrpid=verified.rrpid,
        request_digest=digest,
        respond=respond,
        checked_at_ms=bank.as_of_ms,
        capture_now=verified.data.capture_now,
        hold_id=hold_id,
        prebuilt=prebuilt,
    )
