"""Requester checks the other registration tests leave without a test of their own, each
pinned by its code and its reason (several checks share a code): what the merchant
refuses in Me-AqCInitRes and CertRes, what the wallet refuses in RegFormRes and CertRes,
and the bounds on the CA's text a requester prints."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyUsage
from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account, pan_secret
from setcore.pki import CertificateUsage, MerchantData, issue_cardholder, issue_merchant, kem_for
from setcore.pki.issuance import _end_entity, card_expiry_end
from setcore.pki.roles import CARDHOLDER
from setcore.pki.truststore import TrustStore
from setcore.registration import (
    MAX_FORM_ID_CHARS,
    MAX_FORM_TEXT_CHARS,
    MAX_POLICY_TEXT_CHARS,
    MAX_REFERRAL_CHARS,
    REQUEST_COMPLETE,
    FormTemplate,
    ca_bundle,
)
from setcore.registration_cardholder import (
    build_card_cert_request,
    build_reg_form_request,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_cardholder_ca import (
    build_card_cert_response,
    build_reg_form_response,
    open_card_cert_request,
    open_reg_form_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import (
    CERT_RES_CT,
    MAX_EE_MESSAGE_CHARS,
    CertAnswer,
    peek_cert_request,
)
from setcore.registration_merchant import (
    MerchantIdentity,
    build_me_aq_c_init_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.registration_merchant_ca import (
    build_me_aq_c_init_response,
    build_merchant_cert_response,
)
from setcore.signed import sign

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .registration_support import (
    FORM,
    S,
    _ca,
    _contact,
    _form,
    _key,
    _merchant_cert_request,
    _revocation,
    refused,
    registration_world,
)

INVALID_CERTIFICATE = ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
DECODING_FAILURE = ErrorCode.ERROR_CODE_DECODING_FAILURE
MERCHANT = MerchantData("m-0001", "Corner Shop", False)


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


# --- merchant -----------------------------------------------------------------------


def _merchant_answer(
    world: World, r, certificates: tuple[bytes, ...], ca: Credentials | None = None
):  # type: ignore[no-untyped-def]
    body = build_merchant_cert_response(
        ca or r.mca, r.answer, REQUEST_COMPLETE, revocation=_revocation(world),
        certificates=certificates,
    )  # fmt: skip
    return S.CertResponse(cert_res=body)


def _merchant_certificates(world: World, sig_key, kex_key, kem=None) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    ca = world.brand.merchant_ca.ca
    return (
        issue_merchant(ca, sig_key.public_key, CertificateUsage.SIGNATURE, MERCHANT),
        issue_merchant(
            ca, kex_key.public_key, CertificateUsage.KEY_EXCHANGE, MERCHANT,
            kem=kem or kem_for(kex_key),
        ),
    )  # fmt: skip


def test_a_merchant_cert_res_from_another_ca_is_refused(world: World) -> None:
    r = _merchant_cert_request(world)
    certificates = _merchant_certificates(world, r.sig, r.kex)
    reason = refused(
        INVALID_CERTIFICATE, open_merchant_cert_response,
        _merchant_answer(world, r, certificates, _ca(world, "cardholder")), r.state, r.trust,
    )  # fmt: skip
    assert reason == "signed by an unexpected party"


def test_a_merchant_certificate_for_another_key_is_refused(world: World) -> None:
    r = _merchant_cert_request(world)
    for sig, kex in ((_key(world), r.kex), (r.sig, _key(world, KeyUsage.KEY_EXCHANGE))):
        certificates = _merchant_certificates(world, sig, kex)
        reason = refused(
            INVALID_CERTIFICATE, open_merchant_cert_response,
            _merchant_answer(world, r, certificates), r.state, r.trust,
        )  # fmt: skip
        assert reason == "certificate for another key"


def test_a_merchant_key_exchange_certificate_naming_another_kem_is_refused(
    world: World,
) -> None:
    """The merchant's RSA key-exchange key takes RSA-OAEP with SHA-256; a certificate
    naming SHA-1 for it would have the gateway seal with a KEM the key was not made for."""
    r = _merchant_cert_request(world)
    rsa_kex = world.backend.generate(
        "merchant-kex-rsa", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.RSA_2048
    )
    assert kem_for(rsa_kex) is KemAlgorithm.RSA_OAEP_SHA256
    state = replace(r.state, key_exchange_key=rsa_kex)
    certificates = _merchant_certificates(world, r.sig, rsa_kex, KemAlgorithm.RSA_OAEP_SHA1)
    reason = refused(
        INVALID_CERTIFICATE, open_merchant_cert_response,
        _merchant_answer(world, r, certificates), state, r.trust,
    )  # fmt: skip
    assert reason == "certificate names another KEM"


def test_merchant_certificates_in_each_others_place_are_refused(world: World) -> None:
    r = _merchant_cert_request(world)
    sig_cert, kex_cert = _merchant_certificates(world, r.sig, r.kex)
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, open_merchant_cert_response,
        _merchant_answer(world, r, (kex_cert, sig_cert)), r.state, r.trust,
    )  # fmt: skip
    assert reason == "key-exchange certificate where signature is required"


def test_a_me_aq_c_init_res_for_another_request_type_is_refused(world: World) -> None:
    identity = MerchantIdentity("m-0001", "Corner Shop")
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m"
    )
    changed = S.MeAqCInitRequest()
    changed.CopyFrom(request)
    changed.request_type = S.REQUEST_TYPE_MER_RENEWAL_BOTH
    body = build_me_aq_c_init_response(
        _ca(world, "merchant"), changed, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_me_aq_c_init_response,
        S.MeAqCInitResponse(me_aq_c_init_res=body), state, TrustStore(world.root.der),
    )  # fmt: skip
    assert reason == "answer for another request type"


# --- cardholder ---------------------------------------------------------------------


def test_a_reg_form_res_naming_another_ca_key_exchange_key_is_refused(world: World) -> None:
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    view = open_reg_form_request(request, _ca(world))
    cca, mca = world.brand.cardholder_ca, world.brand.merchant_ca
    # The right CA signs, but names a key-exchange certificate other than CardCInitRes's.
    switched = Credentials(
        world.backend, cca.ca.key, cca.ca.der, (), mca.key_exchange_key, mca.key_exchange_der
    )
    body = build_reg_form_response(
        switched, view.tbe, new_id(), FORM, revocation=_revocation(world)
    )
    reason = refused(
        INVALID_CERTIFICATE, open_reg_form_response,
        S.RegFormResponse(reg_form_res=body), reg, trust,
    )  # fmt: skip
    assert reason == "CA key-exchange key changed"


class _CardRequest:
    """A wallet's CertReq as its CA opened it, and how the CA would answer it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.trust, reg, form = _form(world)
        self.key = _key(world)
        request, self.state = build_card_cert_request(
            world.backend, self.key, form, reg, PAN(TEST_PAN), TEST_EXPIRY
        )
        opened = open_card_cert_request(peek_cert_request(request), _ca(world))
        self.proven = verify_card_cert_request(opened, self.trust)
        data = opened.data
        self.back_key = data.back_key
        self.answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
        self.nonce = new_id()

    def certificate(self) -> bytes:
        secret = pan_secret(self.proven.card_secret, self.nonce)
        return issue_cardholder(
            self.world.brand.cardholder_ca.ca, self.key.public_key,
            blinded_account(secret, PAN(TEST_PAN), TEST_EXPIRY), card_expiry_end(TEST_EXPIRY),
        )  # fmt: skip

    def response(
        self,
        certificate: bytes | None,
        *,
        status: int = REQUEST_COMPLETE,
        nonce: bytes | None = None,
        ee_message: str = "",
    ) -> S.CertResponse:
        body = build_card_cert_response(
            _ca(self.world), self.back_key, self.answer, status,
            revocation=_revocation(self.world), certificate=certificate,
            nonce_cca=self.nonce if nonce is None else nonce, ee_message=ee_message,
        )  # fmt: skip
        return S.CertResponse(cert_res=body)


def test_a_complete_card_cert_res_without_a_certificate_is_refused(world: World) -> None:
    card = _CardRequest(world)
    reason = refused(
        DECODING_FAILURE, open_card_cert_response, card.response(None), card.state, card.trust
    )
    assert reason == "one cardholder certificate expected"


def test_a_cardholder_certificate_without_a_blinded_account_is_refused(world: World) -> None:
    """Refused by the trust store, before the wallet's own check (which stays to narrow
    the type): a cardholder certificate without one does not chain as a cardholder's."""
    card = _CardRequest(world)
    cca = world.brand.cardholder_ca.ca
    now = datetime.now(UTC)
    window = (now - timedelta(minutes=1), now + timedelta(days=30))
    bare = _end_entity(
        cca, card.key.public_key, CARDHOLDER, CertificateUsage.SIGNATURE, "c-bare", None, window
    )
    reason = refused(
        INVALID_CERTIFICATE, open_card_cert_response, card.response(bare), card.state, card.trust
    )
    assert reason == "cardholder certificate without a blinded account id"


@pytest.mark.parametrize("nonce", [b"", b"\x01" * 16], ids=["missing", "short"])
def test_a_card_cert_res_without_a_whole_nonce_cca_is_refused(world: World, nonce: bytes) -> None:
    card = _CardRequest(world)
    reason = refused(
        DECODING_FAILURE, open_card_cert_response,
        card.response(card.certificate(), nonce=nonce), card.state, card.trust,
    )  # fmt: skip
    assert reason == "Nonce-CCA must be 32 bytes"


def test_a_cert_res_with_an_unspecified_status_is_refused(world: World) -> None:
    """UNSPECIFIED is no CertStatusCode a CA sends (CERT_STATUS_NAMES leaves it out):
    read as one, a wallet would report a refusal the CA never made."""
    card = _CardRequest(world)
    response = card.response(None, status=S.CERT_STATUS_CODE_UNSPECIFIED)
    reason = refused(DECODING_FAILURE, open_card_cert_response, response, card.state, card.trust)
    assert reason == "unspecified CertStatusCode"


# --- the CA's text, bounded -----------------------------------------------------------


def test_a_cert_res_with_an_oversized_ee_message_is_refused(world: World) -> None:
    """The CA's free text is bounded as the CA bounds it when it signs (its own builder
    refuses more, so this answer is signed by hand)."""
    r = _merchant_cert_request(world)

    def answered(ee_message: str) -> S.CertResponse:
        data = S.CertResData(
            content_type=CERT_RES_CT, rrpid=r.answer.rrpid, lid_ee=r.answer.lid_ee,
            chall_ee3=r.answer.chall_ee3, lid_ca=r.answer.lid_ca,
            cert_status=S.CertStatus(
                cert_status_code=S.CERT_STATUS_CODE_REJECTED_BY_AGENT, ee_message=ee_message
            ),
        ).SerializeToString()  # fmt: skip
        mca = r.mca
        bundle = ca_bundle(mca, revocation=_revocation(world))
        signed = sign(
            mca.backend, mca.signature_key, mca.signature_thumb, CERT_RES_CT, data, bundle
        )
        return S.CertResponse(cert_res=signed.SerializeToString())

    at_bound = answered("x" * MAX_EE_MESSAGE_CHARS)
    assert open_merchant_cert_response(at_bound, r.state, r.trust).ee_message
    reason = refused(
        DECODING_FAILURE, open_merchant_cert_response,
        answered("x" * (MAX_EE_MESSAGE_CHARS + 1)), r.state, r.trust,
    )  # fmt: skip
    assert reason == f"EEMessage over {MAX_EE_MESSAGE_CHARS} characters"


@pytest.mark.parametrize(
    ("form", "referral", "reason"),
    [
        (FormTemplate("f" * (MAX_FORM_ID_CHARS + 1), ("name",), "policy"), "",
         f"form form id over {MAX_FORM_ID_CHARS} characters"),
        (FormTemplate("form-1", ("name",), "p" * (MAX_POLICY_TEXT_CHARS + 1)), "",
         f"form policy text over {MAX_POLICY_TEXT_CHARS} characters"),
        (FormTemplate("form-1", ("n" * (MAX_FORM_TEXT_CHARS + 1),), "policy"), "",
         f"form field name over {MAX_FORM_TEXT_CHARS} characters"),
        (FORM, "r" * (MAX_REFERRAL_CHARS + 1),
         f"form referral over {MAX_REFERRAL_CHARS} characters"),
    ],
    ids=["form-id", "policy", "field-name", "referral"],
)  # fmt: skip
def test_a_reg_form_res_with_oversized_text_is_refused(
    world: World, form: FormTemplate, referral: str, reason: str
) -> None:
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    view = open_reg_form_request(request, _ca(world))
    body = build_reg_form_response(
        _ca(world), view.tbe, new_id(), form, revocation=_revocation(world), referral=referral
    )
    got = refused(
        DECODING_FAILURE, open_reg_form_response, S.RegFormResponse(reg_form_res=body), reg, trust
    )
    assert got == reason
