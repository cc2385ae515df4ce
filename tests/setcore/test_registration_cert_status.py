"""A CertRes whose CertStatusCode this release does not define (a CA of a later release).

Such a status could mean "pended" as well as "refused": the requester reads it as
neither, but as an outcome unknown (``CertStatusUnknown``), and only once the answer
passed every check any answer passes. A forged or misdirected answer carrying one is
refused as any other is, never taken for an outcome unknown.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.purchase import header
from setcore.registration_cardholder import open_card_cert_response
from setcore.registration_certreq import CertAnswer, CertStatusUnknown
from setcore.registration_merchant import open_merchant_cert_response
from setcore.registration_merchant_ca import build_merchant_cert_response
from setpay.v1 import crypto_pb2

from .pki.conftest import World
from .registration_support import (
    S,
    _ca,
    _merchant_cert_request,
    _MerchantCertRequest,
    _revocation,
    refused,
    registration_world,
)
from .test_registration_requester_checks import _CardRequest

# A CertStatusCode no release of this build defines: what a CA of a later one might send.
LATER = 42


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def _merchant_answer(
    world: World, r: _MerchantCertRequest, answer: CertAnswer | None = None, *, by: str = "merchant"
) -> S.CertResponse:
    """The Merchant CA's CertRes of status LATER to ``r`` (``answer``: whom it answers;
    ``by``: the CA that signs it)."""
    body = build_merchant_cert_response(
        _ca(world, by), answer or r.answer, LATER, revocation=_revocation(world)
    )
    return S.CertResponse(cert_res=body)


def test_a_verified_cert_res_of_an_unknown_status_is_an_outcome_unknown(world: World) -> None:
    r = _merchant_cert_request(world)
    with pytest.raises(CertStatusUnknown) as unknown:
        open_merchant_cert_response(_merchant_answer(world, r), r.state, r.trust)
    assert not isinstance(unknown.value, ProtocolError)  # no check failed: not a refusal
    assert unknown.value.status == LATER
    assert unknown.value.status_name == "CertStatusCode 42"
    assert str(unknown.value) == (
        "the CA answered CertStatusCode 42, a status this release does not know: the "
        "outcome of the request is unknown"
    )


def test_a_cardholders_cert_res_of_an_unknown_status_is_an_outcome_unknown(world: World) -> None:
    card = _CardRequest(world)
    response = card.response(None, status=LATER, nonce=b"")
    with pytest.raises(CertStatusUnknown) as unknown:
        open_card_cert_response(response, card.state, card.trust)
    assert unknown.value.status_name == "CertStatusCode 42"


def test_an_unknown_status_not_echoing_chall_ee3_is_refused_as_before(world: World) -> None:
    r = _merchant_cert_request(world)
    forged = _merchant_answer(world, r, replace(r.answer, chall_ee3=new_id()))
    reason = refused(
        ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH, open_merchant_cert_response, forged, r.state,
        r.trust,
    )  # fmt: skip
    assert reason == "Chall-EE3 not echoed"


def test_a_cardholders_unknown_status_not_echoing_chall_ee3_is_refused(world: World) -> None:
    card = _CardRequest(world)
    card.answer = replace(card.answer, chall_ee3=new_id())
    response = card.response(None, status=LATER, nonce=b"")
    reason = refused(
        ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH, open_card_cert_response, response, card.state,
        card.trust,
    )  # fmt: skip
    assert reason == "Chall-EE3 not echoed"


def test_an_unknown_status_under_a_wrong_signature_is_refused_as_before(world: World) -> None:
    r = _merchant_cert_request(world)
    signed = crypto_pb2.Signed.FromString(_merchant_answer(world, r).cert_res)
    value = bytearray(signed.signatures[0].value)
    value[10] ^= 0x01  # inside r: still a well-formed signature, of other bytes
    signed.signatures[0].value = bytes(value)
    tampered = S.CertResponse(cert_res=signed.SerializeToString())
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, open_merchant_cert_response, tampered,
            r.state, r.trust)  # fmt: skip


def test_an_unknown_status_signed_by_another_ca_is_refused(world: World) -> None:
    r = _merchant_cert_request(world)
    other = _merchant_answer(world, r, by="cardholder")
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_merchant_cert_response, other, r.state,
        r.trust,
    )  # fmt: skip
    assert reason == "signed by an unexpected party"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"rrpid": b"r" * 16}, ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        ({"lid_ee": b"another-lid"}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"lid_ca": b"another-lid"}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"thumbs": (b"t" * 32,)}, ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
    ],
    ids=["rrpid", "lid-ee", "lid-ca", "thumbs"],
)
def test_an_unknown_status_answering_another_request_is_refused(
    world: World, change: dict[str, object], code: int
) -> None:
    r = _merchant_cert_request(world)
    misdirected = _merchant_answer(world, r, replace(r.answer, **change))  # type: ignore[arg-type]
    refused(code, open_merchant_cert_response, misdirected, r.state, r.trust)


def test_an_unknown_status_under_a_header_naming_another_request_is_refused(
    world: World,
) -> None:
    r = _merchant_cert_request(world)
    response = _merchant_answer(world, r)
    response.header.CopyFrom(header(rrpid=new_id()))
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_merchant_cert_response, response,
            r.state, r.trust)  # fmt: skip
