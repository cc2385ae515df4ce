"""CapReq on a real PKI: the round trip, and every check of the gateway refusing with its
own code (the merchant's checks of CapRes: ``test_capture_response``)."""

from __future__ import annotations

import dataclasses

import pytest

from setcore.authorization import CAP_TOKEN_CT
from setcore.capture import (
    CAP_REQ_CT,
    CAP_TOKEN_SEQ_CT,
    MAX_ITEMS,
    CaptureDecision,
    CaptureItem,
    build_capture_request,
    build_capture_response,
    merchant_rr_tags,
    open_capture_request,
    open_capture_response,
)
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.link import seal_with_baggage
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, capture_pb2, crypto_pb2

from .capture_support import (
    SUCCESS,
    capture_item,
    capture_request,
    capture_response,
    decisions_for,
    verified_capture,
)
from .certified import Certified, eur
from .pinning_support import gateway_of
from .refusals import refused


def _open(c: Certified, request: capture_pb2.CaptureRequest, **kwargs: object) -> object:
    return open_capture_request(request, c.gateway, c.trust(), c.token_key, **kwargs)  # type: ignore[arg-type]


def _with_baggage(request: capture_pb2.CaptureRequest, tokens: list[bytes]) -> None:
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.cap_req)
    envelope.baggage = capture_pb2.CapTokenSeq(cap_tokens=tokens).SerializeToString()
    request.cap_req = envelope.SerializeToString()


# --- round trip ---------------------------------------------------------------------


def test_capture_round_trip(certified: Certified) -> None:
    c = certified
    items = [capture_item(c, 1500), capture_item(c, 700, auth_amount=900)]
    request, state = capture_request(c, items, cap_date_unix_ms=1_700_000_000_000)

    verified = open_capture_request(request, c.gateway, c.trust(), c.token_key)
    assert verified.merchant_id == c.merchant_id
    assert verified.merchant.thumbprint == c.merchant.signature_thumb
    assert verified.merchant_kex.cert_thumb == c.merchant.key_exchange_thumb
    assert verified.rrpid == state.rrpid
    assert verified.request_digest == state.request_digest
    assert [p.item.trans_ids.xid for p in verified.items] == [i.trans_ids.xid for i in items]
    assert [p.token.auth_amt.amount for p in verified.items] == [1999, 900]
    assert verified.items[0].item.cap_payload.cap_date_unix_ms == 1_700_000_000_000

    decisions = decisions_for(verified)
    decisions[1] = CaptureDecision(authorization_pb2.CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION, eur(0))
    result = open_capture_response(
        capture_response(build_capture_response(c.gateway, verified, decisions)),
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
    verified, _ = verified_capture(ec_certified)
    with pytest.raises(ValueError, match="1 results for 2 items"):
        build_capture_response(ec_certified.gateway, verified, decisions_for(verified)[:1])


# --- gateway side: the request and its tokens ---------------------------------------


def test_tampered_baggage_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [capture_item(c), capture_item(c)]
    request, _ = capture_request(c, items)
    # Valid tokens of this merchant, but not the sequence the merchant signed.
    _with_baggage(request, [items[1].cap_token, items[0].cap_token])
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, _open, c, request)


def test_token_of_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = capture_request(
        c, [capture_item(c), capture_item(c, merchant_id=c.other_merchant_id)]
    )
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)


def test_tokens_swapped_between_items_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    first, second = capture_item(c), capture_item(c)
    swapped = [
        dataclasses.replace(first, cap_token=second.cap_token),
        dataclasses.replace(second, cap_token=first.cap_token),
    ]
    request, _ = capture_request(c, swapped)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_XID, _open, c, request)


def test_token_of_another_authorization_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = capture_item(c)
    # Same transaction, another authorization (a split shipment's second AuthRes).
    other = c.token(item.trans_ids.xid, new_id())
    request, _ = capture_request(c, [dataclasses.replace(item, cap_token=other)])
    refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, _open, c, request)


def test_missing_token_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    items = [capture_item(c), capture_item(c)]
    request, _ = capture_request(c, [items[0], dataclasses.replace(items[1], cap_token=b"")])
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
    items = [capture_item(c)]
    # The unauthenticated label beside the envelope names another baggage type.
    request, _ = capture_request(c, items)
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
    items = [capture_item(c), capture_item(c)]
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
    request, _ = capture_request(c, [capture_item(c, token_key=stranger)])
    refused(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, _open, c, request)


def test_no_items_and_too_many_items_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = capture_request(c, [])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    one = capture_item(c)
    request, _ = capture_request(c, [one] * (MAX_ITEMS + 1))
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, _open, c, request)


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amount_is_refused(ec_certified: Certified, amount: int) -> None:
    c = ec_certified
    request, _ = capture_request(c, [capture_item(c, amount)])
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_currency_other_than_the_tokens_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = capture_item(c, currency=840)  # authorized in USD, captured in EUR
    request, _ = capture_request(c, [item])
    assert "currency" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_exponent_other_than_the_tokens_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    # Authorized as 1999 at exponent 3; 1500 at exponent 2 is never rescaled to compare.
    request, _ = capture_request(c, [capture_item(c, exp10=2, token_exp10=3)])
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)
    request, _ = capture_request(c, [capture_item(c, exp10=9, token_exp10=9)])  # no currency has 9
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, c, request)


def test_stale_and_future_requests_are_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = capture_request(c, [capture_item(c)])
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open, c, request, now=later)
    earlier = now_ms() - FRESHNESS_WINDOW_MS - 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW, _open, c, request, now=earlier)


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_header_naming_other_ids_is_refused(ec_certified: Certified, field: str) -> None:
    # CapReq signs its RRPID and no transaction of its own: the header names no XID or LID.
    c = ec_certified
    request, _ = capture_request(c, [capture_item(c)])
    setattr(request.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open, c, request)


def test_merchant_id_of_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    item = capture_item(c, merchant_id=c.other_merchant_id)
    request, _ = build_capture_request(c.merchant, c.gateway_kex, [item], c.other_merchant_id)
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)


def test_request_signed_by_a_gateway_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = build_capture_request(c.gateway, c.gateway_kex, [capture_item(c)], c.merchant_id)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, _open, c, request)
