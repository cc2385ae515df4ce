"""The CA's checks of whom a CertReq or CertInqReq is signed by (SET-PROTOCOL.md 4.3
rule 2), each broken alone: a signature that verifies, but names another signer than the
key the request is about. Without the thumbprint check the signature would be verified
with the key the request names and pass, so each refusal is asserted by its reason."""

from __future__ import annotations

import pytest

from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.registration import spki_of
from setcore.registration_cardholder import build_card_cert_request
from setcore.registration_cardholder_ca import open_card_cert_request
from setcore.registration_certreq import (
    build_cert_inquiry,
    peek_cert_request,
    read_cert_inquiry,
    verify_cert_inquiry,
    verify_cert_request,
)
from setpay.v1 import crypto_pb2

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .refusals import refused
from .registration_support import S, _ca, _form, _key, registration_world


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def test_a_proof_of_possession_naming_another_signer_is_refused(world: World) -> None:
    trust, reg, form = _form(world)
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    opened.signed.signatures[0].signer_cert_thumb = new_id()
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, opened, trust)
    assert reason == "not signed by the key to certify"


def test_a_renewal_signature_naming_another_certificate_is_refused(world: World) -> None:
    trust, reg, form = _form(world, S.REQUEST_TYPE_CARD_RENEWAL_SIG)
    cca = world.brand.cardholder_ca.ca
    renewing = Credentials(world.backend, world.cardholder_key, world.cardholder, (cca.der,))
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY, renewing=renewing
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    opened.signed.signatures[1].signer_cert_thumb = new_id()
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, opened, trust)
    assert reason == "not signed by the renewed key"


def test_a_cert_inquiry_naming_another_signer_is_refused(world: World) -> None:
    key = _key(world)
    request, _, _ = build_cert_inquiry(world.backend, key, b"lid-ee", b"lid-ca")
    _, signed = read_cert_inquiry(request)
    signed.signatures[0].signer_cert_thumb = new_id()
    reason = refused(
        ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_inquiry, signed, spki_of(key.public_key)
    )
    assert reason == "not signed by the requested key"


def test_a_cert_inquiry_with_two_signatures_is_refused(world: World) -> None:
    request, _, _ = build_cert_inquiry(world.backend, _key(world), b"lid-ee", b"lid-ca")
    signed = crypto_pb2.Signed.FromString(request.cert_inq_req)
    signed.signatures.append(signed.signatures[0])
    request.cert_inq_req = signed.SerializeToString()
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, read_cert_inquiry, request)
    assert reason == "exactly one signature expected"
