"""After authorization: reversal, capture, capture reversal, credit, credit reversal.

Each handler opens the request with setcore (merchant, chain, capture tokens) and hands
the items to the issuer ledger, which decides amounts, duplicates and batches and commits
the decision; the signed response is built after that commit, outside any transaction,
and the ledger stores those bytes under the RRPID, so a retry is sent the same ones
(``gateway.ledger.idempotency``).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.bank import Bank
from gateway.ledger import (
    AuthorizationReversed,
    CaptureItem,
    CreditItem,
    Declined,
    Outcome,
    Posted,
    PostingOutcome,
    Responder,
    ReversalDeclined,
    ReversalItem,
    UnknownHold,
)
from gateway.outcomes import auth_rev_code_for, cap_code_for, cap_rev_or_cred_code_for
from setcore.auth_reversal import (
    AuthRevDecision,
    build_auth_reversal_response,
    open_auth_reversal_request,
    reissue_cap_token,
)
from setcore.cap_rev_or_cred import (
    CapRevOrCredDecision,
    VerifiedCapRevOrCredRequest,
    build_cap_rev_or_cred_response,
    open_capture_reversal_request,
    open_credit_request,
    open_credit_reversal_request,
)
from setcore.capture import (
    CaptureDecision,
    VerifiedCaptureRequest,
    build_capture_response,
    open_capture_request,
)
from setpay.v1 import authorization_pb2, capture_pb2, common_pb2


def _amount(currency: int, amount: int, exp10: int) -> common_pb2.CurrencyAmount:
    return common_pb2.CurrencyAmount(currency=currency, amount=amount, exp10=exp10)


def _items(outcome: Outcome, count: int) -> Sequence[Posted | Declined]:
    """The per-item results of a posting; a whole-request decline applies to every item."""
    if isinstance(outcome, PostingOutcome):
        return outcome.items
    if not isinstance(outcome, Declined):
        raise TypeError(f"unexpected outcome {type(outcome).__name__}")
    return (outcome,) * count


def _still_authorized(bank: Bank, refused: Declined, hold_id: str) -> int:
    """What a refused reversal's authorization stands at, as the ledger decided it."""
    if isinstance(refused, ReversalDeclined):
        return refused.authorized
    # A refusal decided by an earlier release, which did not keep the figure, and answered
    # only now: the hold as it stands now is the truth left to tell. The hold id comes from
    # a capture token this gateway sealed to this merchant.
    try:
        return bank.ledger.hold(hold_id).still_authorized
    except UnknownHold:
        return 0


def auth_reversal(bank: Bank, request: authorization_pb2.AuthReversalRequest) -> bytes:
    """AuthRevReq -> AuthRevRes: lower the hold; a new capture token for what remains.

    A refusal's AuthNewAmt is what the authorization still stands at, never the amount
    in the merchant's capture token, which an earlier reversal may have made stale.
    """
    opening = bank.opening_credentials()
    verified = open_auth_reversal_request(
        request, opening, bank.trust, bank.token_key, at=bank.as_of_time, now=bank.as_of_ms
    )
    token = verified.cap_token
    new_amount = verified.data.auth_new_amt

    def respond(outcome: Outcome) -> bytes:
        if isinstance(outcome, AuthorizationReversed):
            new_token = (
                reissue_cap_token(bank.token_key, verified, hold_id=outcome.hold_id)
                if outcome.amount
                else b""
            )
            decision = AuthRevDecision(
                auth_rev_code=authorization_pb2.AUTH_REV_CODE_APPROVED,
                auth_new_amt=new_amount,
                cap_token_new=new_token,
            )
        else:
            if not isinstance(outcome, Declined):
                raise TypeError(f"unexpected outcome {type(outcome).__name__}")
            standing = _amount(
                token.auth_amt.currency,
                _still_authorized(bank, outcome, token.hold_id),
                token.auth_amt.exp10,
            )
            decision = AuthRevDecision(
                auth_rev_code=auth_rev_code_for(outcome.reason), auth_new_amt=standing
            )
        return build_auth_reversal_response(bank.credentials, verified, decision)

    return bank.ledger.reverse_authorization(
        merchant_id=verified.merchant_id,
        hold_id=token.hold_id,
        new_amount=new_amount.amount,
        rrpid=verified.data.auth_rev_rr_tags.rrpid,
        request_digest=verified.request_digest,
        respond=respond,
        checked_at_ms=bank.as_of_ms,
    )


def capture(bank: Bank, request: capture_pb2.CaptureRequest) -> bytes:
    """CapReq -> CapRes: post each item against its hold, never above what is authorized."""
    opening = bank.opening_credentials()
    verified: VerifiedCaptureRequest = open_capture_request(
        request, opening, bank.trust, bank.token_key, at=bank.as_of_time, now=bank.as_of_ms
    )
    items = [
        CaptureItem(
            hold_id=entry.token.hold_id,
            amount=entry.item.cap_payload.cap_req_amt.amount,
            currency=entry.item.cap_payload.cap_req_amt.currency,
            batch_id=entry.item.cap_payload.sale_detail.batch_id or None,
        )
        for entry in verified.items
    ]

    def respond(outcome: Outcome) -> bytes:
        decisions = []
        for entry, result in zip(verified.items, _items(outcome, len(items)), strict=True):
            asked = entry.item.cap_payload.cap_req_amt
            if isinstance(result, Posted):
                decisions.append(
                    CaptureDecision(
                        cap_code=authorization_pb2.CAP_CODE_SUCCESS,
                        cap_amt=_amount(result.currency, result.amount, asked.exp10),
                        batch_id=result.batch_id,
                        batch_sequence_num=result.batch_seq,
                    )
                )
            else:
                decisions.append(
                    CaptureDecision(
                        cap_code=cap_code_for(result.reason),
                        cap_amt=_amount(asked.currency, 0, asked.exp10),
                    )
                )
        return build_capture_response(bank.credentials, verified, decisions)

    return bank.ledger.capture(
        merchant_id=verified.merchant_id,
        items=items,
        rrpid=verified.rrpid,
        request_digest=verified.request_digest,
        respond=respond,
        checked_at_ms=bank.as_of_ms,
    )


def _cap_rev_or_cred_respond(
    bank: Bank, verified: VerifiedCapRevOrCredRequest, count: int
) -> Responder:
    def respond(outcome: Outcome) -> bytes:
        decisions = []
        for entry, result in zip(verified.items, _items(outcome, count), strict=True):
            asked = entry.item.amount
            if isinstance(result, Posted):
                decisions.append(
                    CapRevOrCredDecision(
                        code=capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS,
                        actual_amt=_amount(result.currency, result.amount, asked.exp10),
                        batch_id=result.batch_id,
                        batch_sequence_num=result.batch_seq,
                    )
                )
            else:
                decisions.append(
                    CapRevOrCredDecision(
                        code=cap_rev_or_cred_code_for(result.reason),
                        actual_amt=_amount(asked.currency, 0, asked.exp10),
                    )
                )
        return build_cap_rev_or_cred_response(bank.credentials, verified, decisions)

    return respond


def _reversal_items(verified: VerifiedCapRevOrCredRequest) -> list[ReversalItem]:
    return [
        ReversalItem(
            hold_id=entry.token.hold_id,
            original_rrpid=entry.item.original_rrpid,
            batch_id=entry.item.new_batch_id or None,
            # Signed by the merchant, in the token's unit (setcore checked): the ledger
            # refuses it unless it is the whole original.
            amount=entry.item.amount.amount,
        )
        for entry in verified.items
    ]


def capture_reversal(bank: Bank, request: capture_pb2.CaptureReversalRequest) -> bytes:
    """CapRevReq -> CapRevRes: undo the named captures."""
    opening = bank.opening_credentials()
    verified = open_capture_reversal_request(
        request, opening, bank.trust, bank.token_key, at=bank.as_of_time, now=bank.as_of_ms
    )
    items = _reversal_items(verified)
    return bank.ledger.reverse_capture(
        merchant_id=verified.merchant_id,
        items=items,
        rrpid=verified.rrpid,
        request_digest=verified.request_digest,
        respond=_cap_rev_or_cred_respond(bank, verified, len(items)),
        checked_at_ms=bank.as_of_ms,
    )


def credit(bank: Bank, request: capture_pb2.CreditRequest) -> bytes:
    """CredReq -> CredRes: refund at most what was captured."""
    opening = bank.opening_credentials()
    verified = open_credit_request(
        request, opening, bank.trust, bank.token_key, at=bank.as_of_time, now=bank.as_of_ms
    )
    items = [
        CreditItem(
            hold_id=entry.token.hold_id,
            amount=entry.item.amount.amount,
            currency=entry.item.amount.currency,
            batch_id=entry.item.new_batch_id or None,
        )
        for entry in verified.items
    ]
    return bank.ledger.credit(
        merchant_id=verified.merchant_id,
        items=items,
        rrpid=verified.rrpid,
        request_digest=verified.request_digest,
        respond=_cap_rev_or_cred_respond(bank, verified, len(items)),
        checked_at_ms=bank.as_of_ms,
    )


def credit_reversal(bank: Bank, request: capture_pb2.CreditReversalRequest) -> bytes:
    """CredRevReq -> CredRevRes: undo the named credits."""
    opening = bank.opening_credentials()
    verified = open_credit_reversal_request(
        request, opening, bank.trust, bank.token_key, at=bank.as_of_time, now=bank.as_of_ms
    )
    items = _reversal_items(verified)
    return bank.ledger.reverse_credit(
        merchant_id=verified.merchant_id,
        items=items,
        rrpid=verified.rrpid,
        request_digest=verified.request_digest,
        respond=_cap_rev_or_cred_respond(bank, verified, len(items)),
        checked_at_ms=bank.as_of_ms,
    )
