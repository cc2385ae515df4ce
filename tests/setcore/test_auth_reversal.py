"""Authorization reversal (``setcore.auth_reversal``) on a real PKI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import pytest

from setcore.auth_reversal import (
    AUTH_REV_REQ_CT,
    AuthRevDecision,
    AuthRevRequestState,
    VerifiedAuthRevRequest,
    build_auth_reversal_request,
    build_auth_reversal_response,
    open_auth_reversal_request,
    open_auth_reversal_response,
    reissue_cap_token,
)
from setcore.authorization import CAP_TOKEN_CT, open_cap_token
from setcore.capture import merchant_rr_tags
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.link import seal_with_baggage
from setpay.v1 import authorization_pb2, common_pb2, crypto_pb2

from .certified import Certified, eur, recipient_of, refused, trans_ids
from .pinning_support import gateway_of

APPROVED = authorization_pb2.AUTH_REV_CODE_APPROVED


def _auth_rev(
    c: Certified,
    new_amount: int = 500,
    *,
    token: bytes | None = None,
    currency: int = 978,
    exp10: int = 2,
    token_exp10: int = 2,
    rrpid: bytes | None = None,
) -> tuple[authorization_pb2.AuthReversalRequest, AuthRevRequestState, common_pb2.TransIDs]:
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid, exp10=token_exp10) if token is None else token
    request, state = build_auth_reversal_request(
        c.merchant,
        c.gateway_kex,
        ids,
        auth_rrpid,
        token,
        eur(new_amount, currency, exp10=exp10),
        c.merchant_id,
        rrpid=rrpid,
    )
    return request, state, ids


def _open_auth_rev(
    c: Certified, request: authorization_pb2.AuthReversalRequest, now: int | None = None
) -> VerifiedAuthRevRequest:
    return open_auth_reversal_request(request, c.gateway, c.trust(), c.token_key, now=now)


def _auth_rev_response(payload: bytes) -> authorization_pb2.AuthReversalResponse:
    return authorization_pb2.AuthReversalResponse(auth_rev_res=payload)


def _approve(c: Certified, verified: VerifiedAuthRevRequest) -> AuthRevDecision:
    return AuthRevDecision(
        APPROVED, verified.data.auth_new_amt, reissue_cap_token(c.token_key, verified)
    )


def test_auth_reversal_round_trip(certified: Certified) -> None:
    c = certified
    request, state, ids = _auth_rev(c, 500)
    assert request.header.xid == ids.xid

    verified = _open_auth_rev(c, request)
    assert verified.merchant_id == c.merchant_id
    assert verified.xid == ids.xid
    assert verified.rrpid == state.rrpid
    assert verified.request_digest == state.request_digest
    assert verified.cap_token.auth_amt.amount == 1999
    assert verified.merchant_kex.cert_thumb == c.merchant.key_exchange_thumb

    payload = build_auth_reversal_response(c.gateway, verified, _approve(c, verified))
    result = open_auth_reversal_response(
        _auth_rev_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.auth_rev_code == APPROVED
    assert result.data.auth_new_amt.amount == 500
    assert result.data.pe_thumb == c.gateway.key_exchange_thumb
    assert result.gateway.thumbprint == c.gateway.signature_thumb
    # The new token is the gateway's own, for the reduced amount, still of this merchant.
    merchant = verified.merchant
    renewed = open_cap_token(c.token_key, result.baggage.cap_token_new, merchant=merchant)
    assert renewed.auth_amt.amount == 500
    assert (renewed.xid, renewed.auth_rrpid) == (ids.xid, verified.data.auth_rrpid)
    assert renewed.hold_id == verified.cap_token.hold_id


def test_full_auth_reversal_has_amount_zero(ec_certified: Certified) -> None:
    c = ec_certified
    request, state, _ = _auth_rev(c, 0)
    verified = _open_auth_rev(c, request)
    decision = AuthRevDecision(APPROVED, eur(0))
    payload = build_auth_reversal_response(c.gateway, verified, decision)
    result = open_auth_reversal_response(
        _auth_rev_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.data.auth_new_amt.amount == 0
    assert result.baggage.cap_token_new == b""


def test_auth_reversal_with_tampered_baggage_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _, ids = _auth_rev(c)
    sealed = crypto_pb2.SealedWithBaggage.FromString(request.auth_rev_req)
    sealed.baggage = c.token(ids.xid, new_id())  # a valid token, not the signed one
    request.auth_rev_req = sealed.SerializeToString()
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, _open_auth_rev, c, request)


def test_auth_reversal_with_another_merchants_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid, merchant_id=c.other_merchant_id)
    request, _ = build_auth_reversal_request(
        c.merchant, c.gateway_kex, ids, auth_rrpid, token, eur(1), c.merchant_id
    )
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open_auth_rev, c, request)


def test_auth_reversal_with_a_token_of_another_transaction_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    request, _, _ = _auth_rev(c, token=c.token(new_id(), new_id()))
    refused(ErrorCode.ERROR_CODE_UNKNOWN_XID, _open_auth_rev, c, request)


def test_auth_reversal_with_a_token_of_another_authorization_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    ids = trans_ids()
    request, _ = build_auth_reversal_request(
        c.merchant,
        c.gateway_kex,
        ids,
        new_id(),
        c.token(ids.xid, new_id()),
        eur(1),
        c.merchant_id,
    )
    refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, _open_auth_rev, c, request)


def test_auth_reversal_without_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _, _ = _auth_rev(c, token=b"")
    assert "missing" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_auth_rev, c, request)


def test_auth_reversal_amount_checks(ec_certified: Certified) -> None:
    c = ec_certified
    request, _, _ = _auth_rev(c, -1)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_auth_rev, c, request)
    request, _, _ = _auth_rev(c, 100, currency=840)
    assert "currency" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_auth_rev, c, request)


def test_auth_reversal_amount_in_another_exponent_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    # Authorized as 1999 at exponent 2; 100 at exponent 0 is not "100 cents", and never
    # rescaled: the exponents disagree.
    request, _, _ = _auth_rev(c, 100, exp10=0)
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_auth_rev, c, request)
    # Even a token in that exponent does not make one outside ISO 4217's range acceptable.
    request, _, _ = _auth_rev(c, 100, exp10=-7, token_exp10=-7)
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_auth_rev, c, request)


def test_stale_auth_reversal_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _, _ = _auth_rev(c)
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open_auth_rev, c, request, now=later)


def test_auth_reversal_envelope_for_another_transaction_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    ids, auth_rrpid, rrpid = trans_ids(), new_id(), new_id()
    token = c.token(ids.xid, auth_rrpid)
    data = authorization_pb2.AuthRevReqData(
        content_type=AUTH_REV_REQ_CT,
        auth_rev_rr_tags=merchant_rr_tags(c.merchant, c.merchant_id, rrpid, c.gateway_kex),
        trans_ids=ids,
        auth_rrpid=auth_rrpid,
        auth_new_amt=eur(1),
    )
    envelope = seal_with_baggage(
        c.merchant.backend,
        c.merchant.signature_key,
        c.merchant.signature_thumb,
        AUTH_REV_REQ_CT,
        data.SerializeToString(),
        CAP_TOKEN_CT,
        token,
        c.gateway_kex,
        xid=new_id(),  # bound to another transaction than the signed one
        rrpid=rrpid,
        bundle=c.merchant.bundle(),
    )
    request = authorization_pb2.AuthReversalRequest(auth_rev_req=envelope.SerializeToString())
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_auth_rev, c, request)


def test_auth_reversal_header_for_another_transaction_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    request, _, _ = _auth_rev(c)
    request.header.xid = new_id()
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_auth_rev, c, request)


@pytest.mark.parametrize("field", ["rrpid", "lid_c", "lid_m"])
def test_auth_reversal_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # The builder names the signed RRPID and LID-M in the header; a forged one must not pass
    # (SET-PROTOCOL.md 3.1: wrapperMsgMismatch), as for an AuthReq.
    c = ec_certified
    request, _, _ = _auth_rev(c)
    assert request.header.lid_m
    setattr(request.header, field, new_id() if field == "rrpid" else b"forged")
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_auth_rev, c, request)
    assert "header ids differ" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_auth_reversal_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: the merchant compares the AuthRevRes header with the signed ids.
    c = ec_certified
    request, state, ids = _auth_rev(c)
    verified = _open_auth_rev(c, request)
    payload = build_auth_reversal_response(c.gateway, verified, _approve(c, verified))
    response = _auth_rev_response(payload)
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    open_ = partial(open_auth_reversal_response, gateway_identity=gateway_of(c))
    assert open_(response, c.merchant, state, c.trust()).auth_rev_code == APPROVED
    response.header.lid_c = ids.lid_c  # every signed id named still opens
    assert open_(response, c.merchant, state, c.trust()).auth_rev_code == APPROVED
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_, response, c.merchant, state, c.trust()
    )
    assert "header ids differ" in reason


def _auth_rev_refused_at_merchant(
    c: Certified, code: int, forge: Callable[[VerifiedAuthRevRequest], VerifiedAuthRevRequest]
) -> None:
    request, state, _ = _auth_rev(c)
    verified = _open_auth_rev(c, request)
    payload = build_auth_reversal_response(c.gateway, forge(verified), _approve(c, verified))
    refused(
        code,
        open_auth_reversal_response,
        _auth_rev_response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_auth_reversal_response_naming_another_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    other = c.other_merchant_certificate()
    _auth_rev_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_MERCHANT_MISMATCH,
        lambda v: dataclasses.replace(v, merchant=other),  # type: ignore[arg-type]
    )


def test_auth_reversal_response_to_another_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _auth_rev_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
        lambda v: dataclasses.replace(v, request_digest=new_id()),
    )


def test_auth_reversal_response_sealed_to_another_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    _auth_rev_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_WRONG_RECIPIENT,
        lambda v: dataclasses.replace(v, merchant_kex=recipient_of(c.other_merchant)),
    )


def test_auth_reversal_response_signed_by_a_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    request, state, _ = _auth_rev(c)
    verified = _open_auth_rev(c, request)
    payload = build_auth_reversal_response(c.other_merchant, verified, _approve(c, verified))
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        open_auth_reversal_response,
        _auth_rev_response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )
