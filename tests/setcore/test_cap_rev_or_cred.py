"""Capture reversal, credit and credit reversal (``setcore.cap_rev_or_cred``) on a real PKI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import pytest

from setcore.cap_rev_or_cred import (
    CAPTURE_REVERSAL,
    CREDIT,
    CREDIT_REVERSAL,
    CapRevOrCredDecision,
    CapRevOrCredItem,
    CapRevOrCredState,
    VerifiedCapRevOrCredRequest,
    build_cap_rev_or_cred_response,
    build_capture_reversal_request,
    build_credit_request,
    build_credit_reversal_request,
    open_capture_reversal_request,
    open_capture_reversal_response,
    open_credit_request,
    open_credit_response,
    open_credit_reversal_request,
    open_credit_reversal_response,
)
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setpay.v1 import capture_pb2, common_pb2, crypto_pb2

from .certified import Certified, eur, recipient_of, refused, trans_ids
from .pinning_support import gateway_of

SUCCESS = capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS


_BUILD: dict[int, Callable[..., tuple[object, CapRevOrCredState]]] = {
    CAPTURE_REVERSAL: build_capture_reversal_request,
    CREDIT: build_credit_request,
    CREDIT_REVERSAL: build_credit_reversal_request,
}


def _item(
    c: Certified, kind: int, amount: int = 700, *, exp10: int = 2, **token_args: object
) -> CapRevOrCredItem:
    ids, auth_rrpid = trans_ids(), new_id()
    return CapRevOrCredItem(
        trans_ids=ids,
        auth_rrpid=auth_rrpid,
        cap_token=c.token(ids.xid, auth_rrpid, **token_args),  # type: ignore[arg-type]
        amount=eur(amount, exp10=exp10),
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
    trust, gateway = c.trust(), gateway_of(c)
    if kind == CAPTURE_REVERSAL:
        response = capture_pb2.CaptureReversalResponse(cap_rev_res=payload)
        return open_capture_reversal_response(
            response, c.merchant, state, trust, gateway_identity=gateway
        )
    if kind == CREDIT:
        return open_credit_response(
            capture_pb2.CreditResponse(cred_res=payload), c.merchant, state, trust,
            gateway_identity=gateway,
        )  # fmt: skip
    response_ = capture_pb2.CreditReversalResponse(cred_rev_res=payload)
    return open_credit_reversal_response(
        response_, c.merchant, state, trust, gateway_identity=gateway
    )


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
    # A refund of 700 at exponent 0 against an authorization at exponent 2: never rescaled.
    request, _ = _request(c, CREDIT, [_item(c, CREDIT, exp10=0)])
    assert "exponent" in refused(
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


@KINDS
@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_request_header_naming_other_ids_is_refused(
    ec_certified: Certified, kind: int, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: the request signs its RRPID and no transaction of its own (its
    # items carry theirs); a header naming another RRPID, or any XID or LID, is refused.
    c = ec_certified
    request, _ = _request(c, kind, [_item(c, kind)])
    assert _open_as(c, kind, request).items
    header = request.header  # type: ignore[attr-defined]
    setattr(header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_as, c, kind, request)
    assert "header ids differ" in reason


def _with_header(kind: int, payload: bytes, plain: common_pb2.Header) -> object:
    """The response of ``kind``'s RPC carrying ``payload`` under the header ``plain``."""
    if kind == CAPTURE_REVERSAL:
        return capture_pb2.CaptureReversalResponse(header=plain, cap_rev_res=payload)
    if kind == CREDIT:
        return capture_pb2.CreditResponse(header=plain, cred_res=payload)
    return capture_pb2.CreditReversalResponse(header=plain, cred_rev_res=payload)


_OPEN_RESPONSE: dict[int, Callable[..., object]] = {
    CAPTURE_REVERSAL: open_capture_reversal_response,
    CREDIT: open_credit_response,
    CREDIT_REVERSAL: open_credit_reversal_response,
}


@KINDS
@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, kind: int, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: the response signs its RRPID and no transaction of its own; a
    # header naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _request(c, kind, [_item(c, kind), _item(c, kind)])
    verified = _open_as(c, kind, request)
    payload = build_cap_rev_or_cred_response(c.gateway, verified, _decisions(verified))
    plain = common_pb2.Header()
    plain.CopyFrom(request.header)  # type: ignore[attr-defined]
    opener = partial(_OPEN_RESPONSE[kind], gateway_identity=gateway_of(c))
    # As the gateway answers: the request's ids echoed.
    result = opener(_with_header(kind, payload, plain), c.merchant, state, c.trust())
    assert result.data.kind == kind  # type: ignore[attr-defined]
    setattr(plain, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opener, _with_header(kind, payload, plain),
        c.merchant, state, c.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason


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
    other = c.other_merchant_certificate()
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
            capture_pb2.CaptureReversalResponse(),
            c.merchant,
            state,
            c.trust(),
            gateway_identity=gateway_of(c),
        )
