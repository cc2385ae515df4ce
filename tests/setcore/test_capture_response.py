"""CapRes on a real PKI: every check the merchant makes of the gateway's answer,
refusing with its own code (the gateway's checks of CapReq: ``test_capture``)."""

from __future__ import annotations

import dataclasses

import pytest

from setcore.capture import (
    CAP_RES_CT,
    CaptureResult,
    CaptureState,
    VerifiedCaptureRequest,
    build_capture_response,
    open_capture_request,
    open_capture_response,
    seal_to_merchant,
)
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id
from setcore.pki.roles import MERCHANT, CertificateUsage
from setpay.v1 import authorization_pb2, capture_pb2
from setpay.v1.common_pb2 import TransIDs

from .capture_support import (
    SUCCESS,
    capture_item,
    capture_request,
    capture_response,
    decisions_for,
    verified_capture,
)
from .certified import Certified, recipient_of
from .pinning_support import gateway_of
from .refusals import refused


def _open_answer(
    c: Certified, response: capture_pb2.CaptureResponse, state: CaptureState
) -> CaptureResult:
    """The merchant opening ``response`` to the request it kept ``state`` of."""
    return open_capture_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )


def _answer_refused(c: Certified, code: int, payload: bytes, state: CaptureState) -> str:
    """The merchant refusing the sealed CapRes ``payload`` with ``code``; the reason."""
    return refused(code, _open_answer, c, capture_response(payload), state)


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_response_header_naming_other_ids_is_refused(ec_certified: Certified, field: str) -> None:
    # SET-PROTOCOL.md 3.1: CapRes signs its RRPID and no transaction of its own; a header
    # naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = capture_request(c, [capture_item(c), capture_item(c)])
    verified = open_capture_request(request, c.gateway, c.trust(), c.token_key)
    response = capture_response(
        build_capture_response(c.gateway, verified, decisions_for(verified))
    )
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    assert _open_answer(c, response, state).items
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_answer, c, response, state)
    assert "header ids differ" in reason


def test_response_naming_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = verified_capture(c)
    other = c.trust().resolve(
        c.other_merchant.signature_thumb,
        c.other_merchant.bundle(),
        MERCHANT,
        CertificateUsage.SIGNATURE,
    )
    forged = dataclasses.replace(verified, merchant=other)
    payload = build_capture_response(c.gateway, forged, decisions_for(verified))
    _answer_refused(c, ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, payload, state)


def test_response_to_another_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    rrpid = new_id()
    # Two requests under one RRPID (a retry with changed content): each answer names its own.
    _, first = capture_request(c, [capture_item(c)], rrpid=rrpid)
    second, _ = capture_request(c, [capture_item(c)], rrpid=rrpid)
    verified = open_capture_request(second, c.gateway, c.trust(), c.token_key)
    payload = build_capture_response(c.gateway, verified, decisions_for(verified))
    # The items differ too, but the request digest is checked first.
    _answer_refused(c, ErrorCode.ERROR_CODE_DIGEST_MISMATCH, payload, first)


def test_response_with_another_rrpid_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, _ = verified_capture(c)
    _, other_state = capture_request(c, [capture_item(c)])
    payload = build_capture_response(c.gateway, verified, decisions_for(verified))
    _answer_refused(c, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, payload, other_state)


def test_response_sealed_to_another_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = verified_capture(c)
    forged = dataclasses.replace(verified, merchant_kex=recipient_of(c.other_merchant))
    payload = build_capture_response(c.gateway, forged, decisions_for(verified))
    _answer_refused(c, ErrorCode.ERROR_CODE_WRONG_RECIPIENT, payload, state)


def test_response_signed_by_a_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = verified_capture(c)
    payload = build_capture_response(c.other_merchant, verified, decisions_for(verified))
    _answer_refused(c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, payload, state)


def _signed_answer(
    c: Certified, verified: VerifiedCaptureRequest, answered: list[tuple[TransIDs, bytes]]
) -> capture_pb2.CaptureResponse:
    """A CapRes the gateway really signed and sealed for the request ``verified``, whose
    items answer ``answered`` (TransIDs, auth RRPID): what its own builder never writes."""
    data = capture_pb2.CapResData(
        content_type=CAP_RES_CT,
        cap_rr_tags=verified.data.cap_rr_tags,
        merchant_cert_thumb=verified.merchant.thumbprint,
        request_digest=verified.request_digest,
    )
    for ids, auth_rrpid in answered:
        data.cap_res_items.add(
            trans_ids=ids,
            auth_rrpid=auth_rrpid,
            cap_res_payload=authorization_pb2.CapResPayload(cap_code=SUCCESS),
        )
    payload = seal_to_merchant(
        c.gateway, CAP_RES_CT, data.SerializeToString(), verified.merchant_kex,
        rrpid=verified.rrpid,
    )  # fmt: skip
    return capture_response(payload)


def _sent(verified: VerifiedCaptureRequest) -> list[tuple[TransIDs, bytes]]:
    return [(p.item.trans_ids, p.item.auth_rrpid) for p in verified.items]


def test_response_answering_other_items_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    verified, state = verified_capture(c)
    answered = _sent(verified)
    assert _open_answer(c, _signed_answer(c, verified, answered), state)  # as sent, it opens
    reason = refused(
        ErrorCode.ERROR_CODE_UNKNOWN_XID, _open_answer, c,
        _signed_answer(c, verified, answered[::-1]), state,
    )  # fmt: skip
    assert "response item for another transaction" in reason


@pytest.mark.parametrize("answered", [1, 3], ids=["fewer", "more"])
def test_response_answering_another_number_of_items_is_refused(
    ec_certified: Certified, answered: int
) -> None:
    # Two items sent; the answer, signed by the gateway itself, has one or three: an item
    # left unanswered would stay unsettled at the merchant, an extra one is for no request.
    c = ec_certified
    verified, state = verified_capture(c)
    items = (_sent(verified) * 2)[:answered]
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_answer, c,
        _signed_answer(c, verified, items), state,
    )  # fmt: skip
    assert "response item count differs" in reason


def test_response_answering_another_authorization_of_the_transaction_is_refused(
    ec_certified: Certified,
) -> None:
    # Same XID, another auth RRPID: a split shipment's other authorization of the order,
    # whose capture result this answer must not be taken for.
    c = ec_certified
    verified, state = verified_capture(c)
    (first, _), second = _sent(verified)
    reason = refused(
        ErrorCode.ERROR_CODE_UNKNOWN_RRPID, _open_answer, c,
        _signed_answer(c, verified, [(first, new_id()), second]), state,
    )  # fmt: skip
    assert "response item for another auth" in reason


def test_gateway_error_is_raised_with_its_code(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = verified_capture(c)
    error = build_error(
        c.gateway, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, rrpid=state.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    with pytest.raises(PeerError) as caught:
        _open_answer(c, capture_pb2.CaptureResponse(error=error), state)
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def test_an_error_is_the_gateways_refusal_only_for_this_request(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = capture_request(c, [capture_item(c)])
    code = ErrorCode.ERROR_CODE_DIGEST_MISMATCH
    named = build_error(c.gateway, code, rrpid=state.rrpid, request=state.request_digest)
    ours = capture_pb2.CaptureResponse(error=named)
    with pytest.raises(PeerError) as refused:
        _open_answer(c, ours, state)
    assert refused.value.code == code
    # The gateway's signed Error about another capture says nothing about this one: the
    # merchant keeps the capture sent rather than failing it.
    other = capture_pb2.CaptureResponse(
        error=build_error(c.gateway, code, rrpid=new_id(), request=state.request_digest)
    )
    with pytest.raises(ProtocolError) as unknown:
        _open_answer(c, other, state)
    assert unknown.value.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID
