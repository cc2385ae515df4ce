"""Cardholder registration without a server: the wallet's checks of CardCInitRes,
RegFormRes and CertRes, and RegFormReq sealed to one CA (``registration_support``)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from hsm.base import KeyHandle, KeyUsage
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account, pan_secret
from setcore.pki import (
    IssuingCA,
    issue_brand_crl_identifier,
    issue_ca_certificate,
    issue_ca_key_exchange,
    issue_cardholder,
    issue_crl,
    kem_for,
)
from setcore.pki.issuance import card_expiry_end
from setcore.pki.roles import CARDHOLDER_CA
from setcore.pki.truststore import TrustStore
from setcore.profiles import EC
from setcore.registration import REQUEST_COMPLETE, RevocationData
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_cardholder_ca import (
    build_card_c_init_response,
    build_card_cert_response,
    build_reg_form_response,
    open_card_cert_request,
    open_reg_form_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import CertAnswer, peek_cert_request
from tests.cards import MASTERCARD

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .registration_support import (
    FORM,
    S,
    _ca,
    _contact,
    _form,
    _key,
    _revocation,
    refused,
    registration_world,
)


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def test_card_c_init_checks_the_echoes(world: World) -> None:
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee", thumbs=[b"\x01" * 32])
    for change, code in (
        (lambda r: setattr(r, "chall_ee", new_id()), ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (lambda r: setattr(r, "rrpid", new_id()), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (lambda r: setattr(r, "lid_ee", b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (lambda r: r.thumbs.thumbs.append(b"\x02" * 32), ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
    ):
        changed = S.CardCInitRequest()
        changed.CopyFrom(request)
        change(changed)
        body = build_card_c_init_response(
            _ca(world), changed, b"lid-ca", revocation=_revocation(world)
        )
        response = S.CardCInitResponse(card_c_init_res=body)
        refused(code, open_card_c_init_response, response, state, trust)


def test_cae_thumb_must_name_a_key_exchange_certificate_of_that_ca(world: World) -> None:
    cca = _ca(world)
    # A Cardholder CA naming the Merchant CA's key-exchange certificate as CAEThumb.
    mca = world.brand.merchant_ca
    lying = replace(
        cca, key_exchange_key=mca.key_exchange_key, key_exchange_cert=mca.key_exchange_der,
        chain=(mca.ca.der,),
    )  # fmt: skip
    with pytest.raises(ProtocolError) as caught:
        _contact(world, lying)
    assert caught.value.code == ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE
    # A second Cardholder CA's key-exchange certificate: right role, wrong CA.
    root = world.root
    key = world.backend.generate(f"cca2-{os.getpid()}", KeyUsage.CA_SIGNING, EC.ca_key)
    der = issue_ca_certificate(root, key.public_key, CARDHOLDER_CA, common_name="second CCA")
    second = IssuingCA(world.backend, key, der, root.chain)
    kex = world.key(KeyUsage.KEY_EXCHANGE)
    kex_der = issue_ca_key_exchange(second, kex.public_key, kem=kem_for(kex))
    pairs = [(ca.der, issue_crl(ca, [], 3)) for ca in (root, *world.cas, second)]
    bci = issue_brand_crl_identifier(root, 7, pairs)
    other = replace(cca, key_exchange_key=kex, key_exchange_cert=kex_der, chain=(der,))
    trust = TrustStore(root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(
        other, request, b"lid-ca", revocation=RevocationData(bci, tuple(c for _, c in pairs))
    )
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_card_c_init_response, S.CardCInitResponse(card_c_init_res=body), state, trust,
    )  # fmt: skip
    assert reason == "CAEThumb names another CA's key"


def test_cardholder_round_trip_and_the_wallets_certificate_checks(world: World) -> None:
    trust, reg, form = _form(world)
    key = _key(world)
    request, state = build_card_cert_request(
        world.backend, key, form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    proven = verify_card_cert_request(opened, trust)
    assert proven.pan == PAN(TEST_PAN) and proven.expiry == TEST_EXPIRY
    data = opened.data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    nonce = new_id()
    cca = world.brand.cardholder_ca.ca

    def issue(pan: str, public_key_of: KeyHandle) -> bytes:
        secret = pan_secret(proven.card_secret, nonce)
        return issue_cardholder(
            cca, public_key_of.public_key, blinded_account(secret, PAN(pan), TEST_EXPIRY),
            card_expiry_end(TEST_EXPIRY),
        )  # fmt: skip

    def answer_with(certificate: bytes, back_key: bytes = data.back_key) -> S.CertResponse:
        body = build_card_cert_response(
            _ca(world), back_key, answer, REQUEST_COMPLETE, revocation=_revocation(world),
            certificate=certificate, nonce_cca=nonce,
        )  # fmt: skip
        return S.CertResponse(cert_res=body)

    good = open_card_cert_response(answer_with(issue(TEST_PAN, key)), state, trust)
    assert good.complete and good.card is not None
    refused(
        ErrorCode.ERROR_CODE_ACCOUNT_MISMATCH,
        open_card_cert_response, answer_with(issue(MASTERCARD, key)), state, trust,
    )  # fmt: skip
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_card_cert_response, answer_with(issue(TEST_PAN, _key(world))), state, trust,
    )  # fmt: skip
    refused(
        ErrorCode.ERROR_CODE_DECRYPTION_FAILURE,
        open_card_cert_response, answer_with(issue(TEST_PAN, key), os.urandom(32)), state, trust,
    )  # fmt: skip


def test_cert_res_must_come_from_the_ca_the_wallet_registered_with(world: World) -> None:
    trust, reg, form = _form(world)
    key = _key(world)
    request, state = build_card_cert_request(
        world.backend, key, form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    data = open_card_cert_request(peek_cert_request(request), _ca(world)).data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    # Signed by the Merchant CA: a valid chain, but not the CA of this registration.
    body = build_card_cert_response(
        _ca(world, "merchant"), data.back_key, answer, S.CERT_STATUS_CODE_REJECTED_BY_ISSUER,
        revocation=_revocation(world),
    )  # fmt: skip
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_card_cert_response, S.CertResponse(cert_res=body), state, trust,
    )  # fmt: skip
    assert reason == "signed by an unexpected party"


def test_reg_form_is_sealed_to_one_ca(world: World) -> None:
    _, contact = _contact(world)
    request, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    refused(
        ErrorCode.ERROR_CODE_WRONG_RECIPIENT, open_reg_form_request, request, _ca(world, "merchant")
    )


def test_reg_form_res_checks_the_echoes(world: World) -> None:
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee", thumbs=[b"\x01" * 32])
    view = open_reg_form_request(request, _ca(world))
    for change, code in (
        (lambda t: setattr(t, "chall_ee2", new_id()), ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (lambda t: setattr(t, "rrpid", new_id()), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (lambda t: setattr(t, "lid_ee", b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (lambda t: setattr(t, "lid_ca", b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (lambda t: t.thumbs.thumbs.append(b"\x02" * 32), ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
        (
            lambda t: setattr(t, "request_type", S.REQUEST_TYPE_CARD_RENEWAL_SIG),
            ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH,
        ),
    ):
        tbe = S.RegFormReqTBE()
        tbe.CopyFrom(view.tbe)
        change(tbe)
        body = build_reg_form_response(
            _ca(world), tbe, new_id(), FORM, revocation=_revocation(world)
        )
        refused(code, open_reg_form_response, S.RegFormResponse(reg_form_res=body), reg, trust)
    # A form without Chall-CA cannot be answered with a CertReq.
    body = build_reg_form_response(_ca(world), view.tbe, b"", FORM, revocation=_revocation(world))
    refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        open_reg_form_response, S.RegFormResponse(reg_form_res=body), reg, trust,
    )  # fmt: skip
    # Signed by another CA of the brand than the one the wallet registers with.
    body = build_reg_form_response(
        _ca(world, "merchant"), view.tbe, new_id(), FORM, revocation=_revocation(world)
    )
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_reg_form_response, S.RegFormResponse(reg_form_res=body), reg, trust,
    )  # fmt: skip
    assert reason == "signed by an unexpected party"


def test_card_c_init_res_from_a_ca_of_another_brand(world: World) -> None:
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(_ca(world), request, b"lid-ca", revocation=_revocation(world))
    response = S.CardCInitResponse(card_c_init_res=body)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_card_c_init_response, response, replace(state, brand_id="otherbrand"), trust,
    )  # fmt: skip
    assert reason == "Cardholder CA of another brand"
