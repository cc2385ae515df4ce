"""Authorization reversal, capture reversal, credit and credit reversal on a real PKI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from hsm.base import KeyBackend
from setcore.authorization import CAP_TOKEN_CT, open_cap_token
from setcore.capture import merchant_rr_tags
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.link import seal_with_baggage
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.profiles import EC, Profile
from setcore.reversal import (
    AUTH_REV_REQ_CT,
    CAPTURE_REVERSAL,
    CREDIT,
    CREDIT_REVERSAL,
    AuthRevDecision,
    AuthRevRequestState,
    CapRevOrCredDecision,
    CapRevOrCredItem,
    CapRevOrCredState,
    VerifiedAuthRevRequest,
    VerifiedCapRevOrCredRequest,
    build_auth_reversal_request,
    build_auth_reversal_response,
    build_cap_rev_or_cred_response,
    build_capture_reversal_request,
    build_credit_request,
    build_credit_reversal_request,
    open_auth_reversal_request,
    open_auth_reversal_response,
    open_capture_reversal_request,
    open_capture_reversal_response,
    open_credit_request,
    open_credit_response,
    open_credit_reversal_request,
    open_credit_reversal_response,
    reissue_cap_token,
)
from setpay.v1 import authorization_pb2, capture_pb2, common_pb2, crypto_pb2

from .certified import Certified, certify, eur, recipient_of, refused, trans_ids

APPROVED = authorization_pb2.AUTH_REV_CODE_APPROVED
SUCCESS = capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS


@pytest.fixture
def certified(backend: KeyBackend, profile: Profile) -> Certified:
    return certify(backend, profile)


@pytest.fixture
def ec_certified(backend: KeyBackend) -> Certified:
    return certify(backend, EC)


def _other_merchant_cert(c: Certified) -> object:
    return c.trust().resolve(
        c.other_merchant.signature_thumb,
        c.other_merchant.bundle(),
        MERCHANT,
        CertificateUsage.SIGNATURE,
    )


# --- authorization reversal ---------------------------------------------------------


def _auth_rev(
    c: Certified,
    new_amount: int = 500,
    *,
    token: bytes | None = None,
    currency: int = 978,
    rrpid: bytes | None = None,
) -> tuple[authorization_pb2.AuthReversalRequest, AuthRevRequestState, common_pb2.TransIDs]:
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid) if token is None else token
    request, state = build_auth_reversal_request(
        c.merchant,
        c.gateway_kex,
        ids,
        auth_rrpid,
        token,
        eur(new_amount, currency),
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
    result = open_auth_reversal_response(_auth_rev_response(payload), c.merchant, state, c.trust())
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
    result = open_auth_reversal_response(_auth_rev_response(payload), c.merchant, state, c.trust())
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
        auth_rev_rr_tags=merchant_rr_tags(c.merchant, c.merchant_id, rrpid),
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
    )


def test_auth_reversal_response_naming_another_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    other = _other_merchant_cert(c)
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
    )


# --- capture reversal, credit, credit reversal --------------------------------------

_BUILD: dict[int, Callable[..., tuple[object, CapRevOrCredState]]] = {
    CAPTURE_REVERSAL: build_capture_reversal_request,
    CREDIT: build_credit_request,
    CREDIT_REVERSAL: build_credit_reversal_request,
}


def _item(c: Certified, kind: int, amount: int = 700, **token_args: object) -> CapRevOrCredItem:
    ids, auth_rrpid = trans_ids(), new_id()
    return CapRevOrCredItem(
        trans_ids=ids,
        auth_rrpid=auth_rrpid,
        cap_token=c.token(ids.xid, auth_rrpid, **token_args),  # type: ignore[arg-type]
        amount=eur(amount),
        new_batch_id="batch-8" if kind == CAPTURE_REVERSAL else "",
        original_rrpid=b"" if kind == CREDIT else new_id(),
    )


def _wire(request: object) -> bytes:
    for field in ("cap_rev_req", "cred_req", "cred_rev_req"):
        if hasattr(request, field):
            value: bytes = getattr(request, field)
            return value
    raise AssertionError(request)


def _as(kind: int, envelope: bytes) -> object:
    """The envelope placed in the wire request of ``kind``'s RPC."""
    if kind == CAPTURE_REVERSAL:
        return capture_pb2.CaptureReversalRequest(cap_rev_req=envelope)
    if kind == CREDIT:
        return capture_pb2.CreditRequest(cred_req=envelope)
    return capture_pb2.CreditReversalRequest(cred_rev_req=envelope)


def _open_as(
    c: Certified, kind: int, request: object, now: int | None = None
) -> VerifiedCapRevOrCredRequest:
    trust = c.trust()
    if kind == CAPTURE_REVERSAL:
        assert isinstance(request, capture_pb2.CaptureReversalRequest)
        return open_capture_reversal_request(request, c.gateway, trust, c.token_key, now=now)
    if kind == CREDIT:
        assert isinstance(request, capture_pb2.CreditRequest)
        return open_credit_request(request, c.gateway, trust, c.token_key, now=now)
    assert isinstance(request, capture_pb2.CreditReversalRequest)
    return open_credit_reversal_request(request, c.gateway, trust, c.token_key, now=now)


def _request(
    c: Certified, kind: int, items: list[CapRevOrCredItem], **kwargs: bytes
) -> tuple[object, CapRevOrCredState]:
    build = _BUILD[kind]
    return build(c.merchant, c.gateway_kex, items, c.merchant_id, **kwargs)


def _respond(kind: int, payload: bytes, c: Certified, state: CapRevOrCredState) -> object:
    trust = c.trust()
    if kind == CAPTURE_REVERSAL:
        response = capture_pb2.CaptureReversalResponse(cap_rev_res=payload)
        return open_capture_reversal_response(response, c.merchant, state, trust)
    if kind == CREDIT:
        return open_credit_response(
            capture_pb2.CreditResponse(cred_res=payload), c.merchant, state, trust
        )
    response_ = capture_pb2.CreditReversalResponse(cred_rev_res=payload)
    return open_credit_reversal_response(response_, c.merchant, state, trust)


def _decisions(verified: VerifiedCapRevOrCredRequest) -> list[CapRevOrCredDecision]:
    return [CapRevOrCredDecision(SUCCESS, p.item.amount, "batch-9") for p in verified.items]


KINDS = pytest.mark.parametrize(
    "kind", [CAPTURE_REVERSAL, CREDIT, CREDIT_REVERSAL], ids=["cap-rev", "credit", "cred-rev"]
)


@KINDS
def test_cap_rev_or_cred_round_trip(certified: Certified, kind: int) -> None:
    c = certified
    items = [_item(c, kind, 700), _item(c, kind, 300)]
    request, state = _request(c, kind, items)
    assert state.kind == kind

    verified = _open_as(c, kind, request)
    assert verified.kind == kind
    assert verified.merchant_id == c.merchant_id
    assert verified.rrpid == state.rrpid
    assert verified.request_digest == state.request_digest
    assert [p.item.amount.amount for p in verified.items] == [700, 300]
    assert [p.token.xid for p in verified.items] == [i.trans_ids.xid for i in items]
    assert [p.item.original_rrpid for p in verified.items] == [i.original_rrpid for i in items]

    decisions = _decisions(verified)
    decisions[1] = CapRevOrCredDecision(capture_pb2.CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND, eur(0))
    payload = build_cap_rev_or_cred_response(c.gateway, verified, decisions)
    result = _respond(kind, payload, c, state)
    assert result.data.kind == kind  # type: ignore[attr-defined]
    codes = [i.code for i in result.items]  # type: ignore[attr-defined]
    assert codes == [SUCCESS, capture_pb2.CAP_REV_OR_CRED_CODE_ORIGINAL_NOT_FOUND]
    assert result.items[0].actual_amt.amount == 700  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("signed_as", "sent_as"),
    [(CREDIT, CAPTURE_REVERSAL), (CAPTURE_REVERSAL, CREDIT_REVERSAL), (CREDIT_REVERSAL, CREDIT)],
)
def test_request_of_another_kind_is_refused(
    ec_certified: Certified, signed_as: int, sent_as: int
) -> None:
    c = ec_certified
    item = _item(c, signed_as)
    request, _ = _request(c, signed_as, [item])
    refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH,
        _open_as,
        c,
        sent_as,
        _as(sent_as, _wire(request)),
    )


def test_reversals_must_name_their_original(ec_certified: Certified) -> None:
    c = ec_certified
    for kind in (CREDIT_REVERSAL, CAPTURE_REVERSAL):
        item = dataclasses.replace(_item(c, kind), original_rrpid=b"")
        request, _ = _request(c, kind, [item])
        refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, kind, request)
    item = dataclasses.replace(_item(c, CREDIT), original_rrpid=new_id())
    request, _ = _request(c, CREDIT, [item])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, CREDIT, request)


def test_credit_with_tampered_baggage_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [_item(c, CREDIT), _item(c, CREDIT)]
    request, _ = _request(c, CREDIT, items)
    assert isinstance(request, capture_pb2.CreditRequest)
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.cred_req)
    envelope.baggage = capture_pb2.CapTokenSeq(
        cap_tokens=[items[0].cap_token, items[0].cap_token]
    ).SerializeToString()
    request.cred_req = envelope.SerializeToString()
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, _open_as, c, CREDIT, request)


def test_credit_with_another_merchants_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, CREDIT, [_item(c, CREDIT, merchant_id=c.other_merchant_id)])
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open_as, c, CREDIT, request)


def test_capture_reversal_with_swapped_tokens_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    first, second = _item(c, CAPTURE_REVERSAL), _item(c, CAPTURE_REVERSAL)
    swapped = [
        dataclasses.replace(first, cap_token=second.cap_token),
        dataclasses.replace(second, cap_token=first.cap_token),
    ]
    request, _ = _request(c, CAPTURE_REVERSAL, swapped)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_XID, _open_as, c, CAPTURE_REVERSAL, request)


def test_credit_reversal_with_missing_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = dataclasses.replace(_item(c, CREDIT_REVERSAL), cap_token=b"")
    request, _ = _request(c, CREDIT_REVERSAL, [item])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, CREDIT_REVERSAL, request)


def test_credit_amount_checks(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, CREDIT, [_item(c, CREDIT, 0)])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, CREDIT, request)
    request, _ = _request(c, CREDIT, [_item(c, CREDIT, currency=826)])
    assert "currency" in refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, CREDIT, request
    )


def test_capture_reversal_batch_id_is_bounded(ec_certified: Certified) -> None:
    c = ec_certified
    item = dataclasses.replace(_item(c, CAPTURE_REVERSAL), new_batch_id="b" * 65)
    request, _ = _request(c, CAPTURE_REVERSAL, [item])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_as, c, CAPTURE_REVERSAL, request)


def test_stale_credit_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, CREDIT, [_item(c, CREDIT)])
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open_as, c, CREDIT, request, now=later)


def _credit_refused_at_merchant(
    c: Certified,
    code: int,
    forge: Callable[[VerifiedCapRevOrCredRequest], VerifiedCapRevOrCredRequest],
    signer: object = None,
) -> None:
    request, state = _request(c, CREDIT, [_item(c, CREDIT)])
    verified = _open_as(c, CREDIT, request)
    gateway = c.gateway if signer is None else signer
    payload = build_cap_rev_or_cred_response(gateway, forge(verified), _decisions(verified))  # type: ignore[arg-type]
    refused(code, _respond, CREDIT, payload, c, state)


def test_credit_response_of_another_kind_is_refused(ec_certified: Certified) -> None:
    c = ec_certified

    def as_capture_reversal(v: VerifiedCapRevOrCredRequest) -> VerifiedCapRevOrCredRequest:
        data = capture_pb2.CapRevOrCredReqData()
        data.CopyFrom(v.data)
        data.kind = CAPTURE_REVERSAL
        return dataclasses.replace(v, data=data)

    _credit_refused_at_merchant(c, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, as_capture_reversal)


def test_credit_response_naming_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    other = _other_merchant_cert(c)
    _credit_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_MERCHANT_MISMATCH,
        lambda v: dataclasses.replace(v, merchant=other),  # type: ignore[arg-type]
    )


def test_credit_response_to_another_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _credit_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
        lambda v: dataclasses.replace(v, request_digest=new_id()),
    )


def test_credit_response_sealed_to_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _credit_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_WRONG_RECIPIENT,
        lambda v: dataclasses.replace(v, merchant_kex=recipient_of(c.other_merchant)),
    )


def test_credit_response_signed_by_a_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _credit_refused_at_merchant(
        c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, lambda v: v, signer=c.other_merchant
    )


def test_response_opener_of_another_kind_is_a_caller_bug(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = _request(c, CREDIT, [_item(c, CREDIT)])
    with pytest.raises(ValueError, match="another kind"):
        open_capture_reversal_response(
            capture_pb2.CaptureReversalResponse(), c.merchant, state, c.trust()
        )
