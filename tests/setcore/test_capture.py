"""CapReq / CapRes on a real PKI: round trips, and every check refusing with its own code."""

from __future__ import annotations

import dataclasses

import pytest

from setcore.authorization import CAP_TOKEN_CT
from setcore.capture import (
    CAP_REQ_CT,
    CAP_RES_CT,
    CAP_TOKEN_SEQ_CT,
    MAX_ITEMS,
    CaptureDecision,
    CaptureItem,
    CaptureState,
    VerifiedCaptureRequest,
    build_capture_request,
    build_capture_response,
    merchant_rr_tags,
    open_capture_request,
    open_capture_response,
    seal_to_merchant,
)
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.link import seal_with_baggage
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, capture_pb2, crypto_pb2

from .certified import (
    Certified,
    eur,
    recipient_of,
    refused,
    trans_ids,
)
from .pinning_support import gateway_of

SUCCESS = authorization_pb2.CAP_CODE_SUCCESS


def _item(
    c: Certified, amount: int = 1500, *, exp10: int = 2, token_exp10: int = 2, **token_args: object
) -> CaptureItem:
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid, exp10=token_exp10, **token_args)  # type: ignore[arg-type]
    return CaptureItem(
        trans_ids=ids, auth_rrpid=auth_rrpid, cap_token=token, amount=eur(amount, exp10=exp10)
    )


def _request(
    c: Certified, items: list[CaptureItem], **kwargs: object
) -> tuple[capture_pb2.CaptureRequest, CaptureState]:
    return build_capture_request(
        c.merchant,
        c.gateway_kex,
        items,
        c.merchant_id,
        **kwargs,  # type: ignore[arg-type]
    )


def _open(c: Certified, request: capture_pb2.CaptureRequest, **kwargs: object) -> object:
    return open_capture_request(request, c.gateway, c.trust(), c.token_key, **kwargs)  # type: ignore[arg-type]


def _verified(c: Certified, count: int = 2) -> tuple[VerifiedCaptureRequest, CaptureState]:
    request, state = _request(c, [_item(c, 1000 + n) for n in range(count)])
    return open_capture_request(request, c.gateway, c.trust(), c.token_key), state


def _decisions(verified: VerifiedCaptureRequest) -> list[CaptureDecision]:
    return [
        CaptureDecision(SUCCESS, p.item.cap_payload.cap_req_amt, "batch-7", n + 1)
        for n, p in enumerate(verified.items)
    ]


def _response(payload: bytes) -> capture_pb2.CaptureResponse:
    return capture_pb2.CaptureResponse(cap_res=payload)


def _with_baggage(request: capture_pb2.CaptureRequest, tokens: list[bytes]) -> None:
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.cap_req)
    envelope.baggage = capture_pb2.CapTokenSeq(cap_tokens=tokens).SerializeToString()
    request.cap_req = envelope.SerializeToString()


# --- round trip ---------------------------------------------------------------------


def test_capture_round_trip(certified: Certified) -> None:
    c = certified
    items = [_item(c, 1500), _item(c, 700, auth_amount=900)]
    request, state = _request(c, items, cap_date_unix_ms=1_700_000_000_000)

    verified = open_capture_request(request, c.gateway, c.trust(), c.token_key)
    assert verified.merchant_id == c.merchant_id
    assert verified.merchant.thumbprint == c.merchant.signature_thumb
    assert verified.merchant_kex.cert_thumb == c.merchant.key_exchange_thumb
    assert verified.rrpid == state.rrpid
    assert verified.request_digest == state.request_digest
    assert [p.item.trans_ids.xid for p in verified.items] == [i.trans_ids.xid for i in items]
    assert [p.token.auth_amt.amount for p in verified.items] == [1999, 900]
    assert verified.items[0].item.cap_payload.cap_date_unix_ms == 1_700_000_000_000

    decisions = _decisions(verified)
    decisions[1] = CaptureDecision(authorization_pb2.CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION, eur(0))
    result = open_capture_response(
        _response(build_capture_response(c.gateway, verified, decisions)),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )
    assert result.gateway.thumbprint == c.gateway.signature_thumb
    codes = [i.cap_res_payload.cap_code for i in result.items]
    assert codes == [SUCCESS, authorization_pb2.CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION]
    assert result.items[0].cap_res_payload.batch_id == "batch-7"
    assert result.items[0].cap_res_payload.cap_amt.amount == 1500
    assert result.data.cap_rr_tags.rrpid == state.rrpid


def test_gateway_must_answer_every_item(ec_certified: Certified) -> None:
    verified, _ = _verified(ec_certified)
    with pytest.raises(ValueError, match="1 results for 2 items"):
        build_capture_response(ec_certified.gateway, verified, _decisions(verified)[:1])


# --- gateway side: the request and its tokens ---------------------------------------


def test_tampered_baggage_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [_item(c), _item(c)]
    request, _ = _request(c, items)
    # Valid tokens of this merchant, but not the sequence the merchant signed.
    _with_baggage(request, [items[1].cap_token, items[0].cap_token])
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, _open, c, request)


def test_token_of_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, [_item(c), _item(c, merchant_id=c.other_merchant_id)])
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)


def test_tokens_swapped_between_items_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    first, second = _item(c), _item(c)
    swapped = [
        dataclasses.replace(first, cap_token=second.cap_token),
        dataclasses.replace(second, cap_token=first.cap_token),
    ]
    request, _ = _request(c, swapped)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_XID, _open, c, request)


def test_token_of_another_authorization_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = _item(c)
    # Same transaction, another authorization (a split shipment's second AuthRes).
    other = c.token(item.trans_ids.xid, new_id())
    request, _ = _request(c, [dataclasses.replace(item, cap_token=other)])
    refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, _open, c, request)


def test_missing_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [_item(c), _item(c)]
    request, _ = _request(c, [items[0], dataclasses.replace(items[1], cap_token=b"")])
    assert "missing" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def _signed_request(
    c: Certified,
    items: list[CaptureItem],
    tokens: list[bytes],
    *,
    baggage_type: str = CAP_TOKEN_SEQ_CT,
) -> capture_pb2.CaptureRequest:
    """A CapReq the merchant really signed, over whatever token sequence it is given.

    ``baggage_type`` is the type the signed link names; the envelope is labelled as a
    token sequence regardless.
    """
    rrpid = new_id()
    data = capture_pb2.CapReqData(
        content_type=CAP_REQ_CT,
        cap_rr_tags=merchant_rr_tags(c.merchant, c.merchant_id, rrpid, c.gateway_kex),
    )
    for item in items:
        data.cap_items.add(
            trans_ids=item.trans_ids,
            auth_rrpid=item.auth_rrpid,
            cap_payload=capture_pb2.CapPayload(cap_req_amt=item.amount),
        )
    envelope = seal_with_baggage(
        c.merchant.backend,
        c.merchant.signature_key,
        c.merchant.signature_thumb,
        CAP_REQ_CT,
        data.SerializeToString(),
        baggage_type,
        capture_pb2.CapTokenSeq(cap_tokens=tokens).SerializeToString(),
        c.gateway_kex,
        rrpid=rrpid,
        bundle=c.merchant.bundle(),
    )
    envelope.baggage_content_type = CAP_TOKEN_SEQ_CT
    return capture_pb2.CaptureRequest(cap_req=envelope.SerializeToString())


def test_baggage_of_another_type_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [_item(c)]
    # The unauthenticated label beside the envelope names another baggage type.
    request, _ = _request(c, items)
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.cap_req)
    envelope.baggage_content_type = CAP_TOKEN_CT
    request.cap_req = envelope.SerializeToString()
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    assert "unexpected baggage type" in reason
    # The merchant signed a link naming another baggage type than the one it carries.
    request = _signed_request(c, items, [items[0].cap_token], baggage_type=CAP_TOKEN_CT)
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    assert "link carries unexpected types" in reason


def test_fewer_tokens_than_items_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [_item(c), _item(c)]
    # Signed by the merchant itself: the count check, not the link, must refuse it.
    request = _signed_request(c, items, [items[0].cap_token])
    assert "one capture token per item" in refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request
    )
    request = _signed_request(c, items, [i.cap_token for i in items] * 2)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_token_sealed_by_another_key_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    # The key-exchange key stands in for another gateway's token key.
    stranger = TokenKey.create(c.merchant.backend, c.merchant.require_key_exchange()[0])
    request, _ = _request(c, [_item(c, token_key=stranger)])
    refused(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, _open, c, request)


def test_no_items_and_too_many_items_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, [])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    one = _item(c)
    request, _ = _request(c, [one] * (MAX_ITEMS + 1))
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, _open, c, request)


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amount_is_refused(ec_certified: Certified, amount: int) -> None:
    c = ec_certified
    request, _ = _request(c, [_item(c, amount)])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_currency_other_than_the_tokens_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = _item(c, currency=840)  # authorized in USD, captured in EUR
    request, _ = _request(c, [item])
    assert "currency" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_exponent_other_than_the_tokens_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    # Authorized as 1999 at exponent 3; 1500 at exponent 2 is never rescaled to compare.
    request, _ = _request(c, [_item(c, exp10=2, token_exp10=3)])
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    request, _ = _request(c, [_item(c, exp10=9, token_exp10=9)])  # no currency has 9
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_stale_and_future_requests_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _request(c, [_item(c)])
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open, c, request, now=later)
    earlier = now_ms() - FRESHNESS_WINDOW_MS - 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW, _open, c, request, now=earlier)


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_header_naming_other_ids_is_refused(ec_certified: Certified, field: str) -> None:
    # CapReq signs its RRPID and no transaction of its own: the header names no XID or LID.
    c = ec_certified
    request, _ = _request(c, [_item(c)])
    setattr(request.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open, c, request)


def test_merchant_id_of_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = _item(c, merchant_id=c.other_merchant_id)
    request, _ = build_capture_request(c.merchant, c.gateway_kex, [item], c.other_merchant_id)
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)


def test_request_signed_by_a_gateway_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = build_capture_request(c.gateway, c.gateway_kex, [_item(c)], c.merchant_id)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, _open, c, request)


# --- merchant side: the response -----------------------------------------------------


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_response_header_naming_other_ids_is_refused(ec_certified: Certified, field: str) -> None:
    # SET-PROTOCOL.md 3.1: CapRes signs its RRPID and no transaction of its own; a header
    # naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _request(c, [_item(c), _item(c)])
    verified = open_capture_request(request, c.gateway, c.trust(), c.token_key)
    response = _response(build_capture_response(c.gateway, verified, _decisions(verified)))
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    assert open_capture_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    ).items
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_capture_response, response, c.merchant,
        state, c.trust(), gateway_identity=gateway_of(c),
    )  # fmt: skip
    assert "header ids differ" in reason


def test_response_naming_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = _verified(c)
    other = c.trust().resolve(
        c.other_merchant.signature_thumb,
        c.other_merchant.bundle(),
        MERCHANT,
        CertificateUsage.SIGNATURE,
    )
    forged = dataclasses.replace(verified, merchant=other)
    payload = build_capture_response(c.gateway, forged, _decisions(verified))
    refused(
        ErrorCode.ERROR_CODE_MERCHANT_MISMATCH,
        open_capture_response,
        _response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_response_to_another_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    rrpid = new_id()
    # Two requests under one RRPID (a retry with changed content): each answer names its own.
    _, first = _request(c, [_item(c)], rrpid=rrpid)
    second, _ = _request(c, [_item(c)], rrpid=rrpid)
    verified = open_capture_request(second, c.gateway, c.trust(), c.token_key)
    payload = build_capture_response(c.gateway, verified, _decisions(verified))
    # The items differ too, but the request digest is checked first.
    refused(
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
        open_capture_response,
        _response(payload),
        c.merchant,
        first,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_response_with_another_rrpid_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, _ = _verified(c)
    _, other_state = _request(c, [_item(c)])
    payload = build_capture_response(c.gateway, verified, _decisions(verified))
    refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH,
        open_capture_response,
        _response(payload),
        c.merchant,
        other_state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_response_sealed_to_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = _verified(c)
    forged = dataclasses.replace(verified, merchant_kex=recipient_of(c.other_merchant))
    payload = build_capture_response(c.gateway, forged, _decisions(verified))
    refused(
        ErrorCode.ERROR_CODE_WRONG_RECIPIENT,
        open_capture_response,
        _response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_response_signed_by_a_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = _verified(c)
    payload = build_capture_response(c.other_merchant, verified, _decisions(verified))
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        open_capture_response,
        _response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_response_answering_other_items_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = _verified(c)
    data = capture_pb2.CapResData(
        content_type=CAP_RES_CT,
        cap_rr_tags=verified.data.cap_rr_tags,
        merchant_cert_thumb=verified.merchant.thumbprint,
        request_digest=verified.request_digest,
    )
    for paired in reversed(verified.items):
        data.cap_res_items.add(
            trans_ids=paired.item.trans_ids,
            auth_rrpid=paired.item.auth_rrpid,
            cap_res_payload=authorization_pb2.CapResPayload(cap_code=SUCCESS),
        )
    payload = seal_to_merchant(
        c.gateway,
        CAP_RES_CT,
        data.SerializeToString(),
        verified.merchant_kex,
        rrpid=verified.rrpid,
    )
    refused(
        ErrorCode.ERROR_CODE_UNKNOWN_XID,
        open_capture_response,
        _response(payload),
        c.merchant,
        state,
        c.trust(),
        gateway_identity=gateway_of(c),
    )


def test_gateway_error_is_raised_with_its_code(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = _verified(c)
    error = build_error(
        c.gateway, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, rrpid=state.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    with pytest.raises(PeerError) as caught:
        open_capture_response(
            capture_pb2.CaptureResponse(error=error),
            c.merchant,
            state,
            c.trust(),
            gateway_identity=gateway_of(c),
        )
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def test_an_error_is_the_gateways_refusal_only_for_this_request(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = _request(c, [_item(c)])
    code = ErrorCode.ERROR_CODE_DIGEST_MISMATCH
    named = build_error(c.gateway, code, rrpid=state.rrpid, request=state.request_digest)
    ours = capture_pb2.CaptureResponse(error=named)
    with pytest.raises(PeerError) as refused:
        open_capture_response(ours, c.merchant, state, c.trust(), gateway_identity=gateway_of(c))
    assert refused.value.code == code
    # The gateway's signed Error about another capture says nothing about this one: the
    # merchant keeps the capture sent rather than failing it.
    other = capture_pb2.CaptureResponse(
        error=build_error(c.gateway, code, rrpid=new_id(), request=state.request_digest)
    )
    with pytest.raises(ProtocolError) as unknown:
        open_capture_response(other, c.merchant, state, c.trust(), gateway_identity=gateway_of(c))
    assert unknown.value.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID
