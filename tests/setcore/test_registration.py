"""Registration messages without a server: the requester's checks and the CA-side openers.

A real brand tree (``tests.setcore.pki.conftest.make_world``) plays the CA; these tests
reach the checks a well-behaved CA never trips (a wrong echo, a certificate for another
key or account, a key-exchange certificate of another CA) by building the CA's answers
with the same setcore functions and one thing changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hsm.base import KeyHandle, KeyUsage, SignatureAlgorithm
from hsm.software import SoftwareBackend
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.pan import PAN, blinded_account, pan_secret
from setcore.pki import (
    CertificateUsage,
    IssuingCA,
    MerchantData,
    issue_brand_crl_identifier,
    issue_ca_certificate,
    issue_ca_key_exchange,
    issue_cardholder,
    issue_crl,
    issue_merchant,
    kem_for,
)
from setcore.pki.issuance import card_expiry_end
from setcore.pki.roles import CARDHOLDER_CA
from setcore.pki.truststore import TrustStore
from setcore.profiles import EC
from setcore.purchase import header
from setcore.registration import (
    REQUEST_COMPLETE,
    REQUEST_PENDED,
    FormTemplate,
    RevocationData,
    load_public_key,
    refusal_status,
    spki_of,
)
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_card_cert_inquiry,
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
    check_card_c_init_request,
    open_card_cert_request,
    open_reg_form_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import (
    CertAnswer,
    build_cert_inquiry,
    peek_cert_request,
    read_cert_inquiry,
    verify_cert_inquiry,
    verify_cert_request,
)
from setcore.registration_merchant import (
    MerchantIdentity,
    MerchantRequestState,
    build_me_aq_c_init_request,
    build_merchant_cert_inquiry,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.registration_merchant_ca import (
    build_me_aq_c_init_response,
    build_merchant_cert_response,
    check_me_aq_c_init_request,
    decryption_error_answer,
    open_merchant_cert_request,
)
from setpay.v1 import common_pb2, registration_pb2
from tests.cards import MASTERCARD

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World, make_world

S = registration_pb2
FORM = FormTemplate("form-1", ("name",), "policy")


def refused(code: int, call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """Run ``call`` expecting a ProtocolError with ``code``; its reason."""
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value.reason


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(SoftwareBackend.ephemeral(), EC)


def _ca(world: World, which: str = "cardholder") -> Credentials:
    sub = getattr(world.brand, f"{which}_ca")
    return Credentials(
        world.backend, sub.ca.key, sub.ca.der, (), sub.key_exchange_key, sub.key_exchange_der
    )


def _revocation(world: World) -> RevocationData:
    return RevocationData(world.bci, world.crls)


def _key(world: World, usage: KeyUsage = KeyUsage.SIGNATURE) -> KeyHandle:
    return world.key(usage)


def _contact(world: World, ca: Credentials | None = None):  # type: ignore[no-untyped-def]
    """CardCInit round trip; the wallet's trust store and the CaContact."""
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(
        ca or _ca(world), request, b"lid-ca", revocation=_revocation(world)
    )
    contact = open_card_c_init_response(S.CardCInitResponse(card_c_init_res=body), state, trust)
    return trust, contact


def _form(  # type: ignore[no-untyped-def]
    world: World, request_type: int = S.REQUEST_TYPE_CARD_INITIAL_SIG
):
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(
        contact, PAN(TEST_PAN), b"lid-ee", request_type=request_type
    )
    view = open_reg_form_request(request, _ca(world))
    assert view.pan == PAN(TEST_PAN)
    body = build_reg_form_response(
        _ca(world), view.tbe, new_id(), FORM, revocation=_revocation(world)
    )
    form = open_reg_form_response(S.RegFormResponse(reg_form_res=body), reg, trust)
    return trust, reg, form


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


def test_proof_of_possession_and_renewal_signatures(world: World) -> None:
    trust, reg, form = _form(world)
    key = _key(world)
    request, _ = build_card_cert_request(world.backend, key, form, reg, PAN(TEST_PAN), TEST_EXPIRY)
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    # A request claiming another key than the one that signed it.
    claimed = replace(opened, data=S.CertReqData())
    claimed.data.CopyFrom(opened.data)
    claimed.data.public_key_sig = spki_of(_key(world).public_key)
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, claimed, trust)
    # A renewal needs two signatures; this request has one.
    renewal = replace(opened, data=S.CertReqData())
    renewal.data.CopyFrom(opened.data)
    renewal.data.request_type = S.REQUEST_TYPE_CARD_RENEWAL_SIG
    refused(ErrorCode.ERROR_CODE_SIGNATURE_REQUIRED, verify_cert_request, renewal, trust)
    # The extra part must be the one the signature covers.
    swapped = replace(opened, extra=opened.extra + b"\x00" if opened.extra else b"")
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, verify_cert_request, swapped, trust)


# A signature value that is well-formed DER (ECDSA r=1, s=1) but no signature of anything:
# only the verification itself can refuse it, not a parser or a thumbprint check.
_FORGED_ECDSA = bytes.fromhex("3006020101020101")


def test_proof_of_possession_must_verify(world: World) -> None:
    trust, reg, form = _form(world)
    key = _key(world)
    request, _ = build_card_cert_request(world.backend, key, form, reg, PAN(TEST_PAN), TEST_EXPIRY)
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    verify_cert_request(opened, trust)  # as sent, it verifies
    opened.signed.signatures[0].value = _FORGED_ECDSA  # the new key's thumbprint kept
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, opened, trust)
    assert "signature" in reason


def test_renewal_signature_must_verify(world: World) -> None:
    trust, reg, form = _form(world, S.REQUEST_TYPE_CARD_RENEWAL_SIG)
    cca = world.brand.cardholder_ca.ca
    renewing = Credentials(world.backend, world.cardholder_key, world.cardholder, (cca.der,))
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY, renewing=renewing
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    assert verify_cert_request(opened, trust).renewed is not None  # as sent, it verifies
    opened.signed.signatures[1].value = _FORGED_ECDSA  # the renewed certificate's thumb kept
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, opened, trust)


def test_cert_inquiry_signature_must_verify(world: World) -> None:
    key = _key(world)
    request, _, _ = build_cert_inquiry(world.backend, key, b"lid-ee", b"lid-ca")
    _, signed = read_cert_inquiry(request)
    spki = spki_of(key.public_key)
    verify_cert_inquiry(signed, spki)  # as sent, it verifies
    signed.signatures[0].value = _FORGED_ECDSA  # the key's thumbprint kept
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_inquiry, signed, spki)


def test_a_signature_naming_another_algorithm_is_a_bad_signature(world: World) -> None:
    """The CA answers SIG_VALIDATION_FAIL for it, and REJECTED_BY_AGENT only for a key."""
    trust, reg, form = _form(world)
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    swapped = replace(opened, signed=type(opened.signed)())
    swapped.signed.CopyFrom(opened.signed)
    swapped.signed.signatures[0].alg = SignatureAlgorithm.RSA_PSS_SHA256.value  # an EC key
    error = _refusal(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, swapped, trust)
    assert refusal_status(error) == S.CERT_STATUS_CODE_SIG_VALIDATION_FAIL
    weak = spki_of(rsa.generate_private_key(65537, 1024).public_key())
    error = _refusal(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, load_public_key, weak, "key")
    assert refusal_status(error) == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert refusal_status(ProtocolError(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, "stale")) is None


def _refusal(code: int, call: Callable[..., object], *args: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value
    return caught.value


def test_requested_keys_are_allow_listed_and_canonical() -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, load_public_key, spki_of(weak), "key")
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, load_public_key, b"\x30\x03\x02\x01\x00", "key")


@dataclass(frozen=True)
class _MerchantCertRequest:
    """Merchant "m-0001" registered up to its CertReq, as the Merchant CA opened it."""

    trust: TrustStore
    mca: Credentials
    sig: KeyHandle
    kex: KeyHandle
    state: MerchantRequestState
    answer: CertAnswer


def _merchant_cert_request(world: World) -> _MerchantCertRequest:
    trust = TrustStore(world.root.der)
    identity = MerchantIdentity("m-0001", "Corner Shop")
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m"
    )
    mca = _ca(world, "merchant")
    body = build_me_aq_c_init_response(
        mca, request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    registration = open_me_aq_c_init_response(
        S.MeAqCInitResponse(me_aq_c_init_res=body), state, trust
    )
    sig, kex = _key(world), _key(world, KeyUsage.KEY_EXCHANGE)
    cert_request, cert_state = build_merchant_cert_request(
        world.backend, sig, kex, registration, state
    )
    data = open_merchant_cert_request(peek_cert_request(cert_request), mca).data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    return _MerchantCertRequest(trust, mca, sig, kex, cert_state, answer)


def test_merchant_certificates_must_name_the_merchant(world: World) -> None:
    r = _merchant_cert_request(world)
    trust, mca, sig, kex, cert_state, answer = r.trust, r.mca, r.sig, r.kex, r.state, r.answer
    ca = world.brand.merchant_ca.ca

    def issued(merchant: MerchantData) -> S.CertResponse:
        certs = (
            issue_merchant(ca, sig.public_key, CertificateUsage.SIGNATURE, merchant),
            issue_merchant(
                ca, kex.public_key, CertificateUsage.KEY_EXCHANGE, merchant, kem=kem_for(kex)
            ),
        )
        body = build_merchant_cert_response(
            mca, answer, REQUEST_COMPLETE, revocation=_revocation(world), certificates=certs
        )
        return S.CertResponse(cert_res=body)

    good = open_merchant_cert_response(issued(MerchantData("m-0001", "Corner Shop", False)),
                                       cert_state, trust)  # fmt: skip
    assert good.complete
    refused(
        ErrorCode.ERROR_CODE_MERCHANT_MISMATCH,
        open_merchant_cert_response, issued(MerchantData("m-0002", "Other", False)),
        cert_state, trust,
    )  # fmt: skip


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


def test_me_aq_c_init_res_checks_the_echoes(world: World) -> None:
    identity = MerchantIdentity("m-0001", "Corner Shop")
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m", thumbs=[b"\x01" * 32]
    )
    mca = _ca(world, "merchant")
    for change, chall_ca, code in (
        (lambda r: setattr(r, "chall_ee", new_id()), new_id(),
         ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (lambda r: setattr(r, "rrpid", new_id()), new_id(), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (lambda r: setattr(r, "lid_ee", b"other"), new_id(), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (lambda r: r.thumbs.thumbs.append(b"\x02" * 32), new_id(),
         ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
        (lambda r: setattr(r, "request_type", S.REQUEST_TYPE_MER_RENEWAL_BOTH), new_id(),
         ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        (lambda r: None, b"", ErrorCode.ERROR_CODE_DECODING_FAILURE),  # no Chall-CA
    ):  # fmt: skip
        changed = S.MeAqCInitRequest()
        changed.CopyFrom(request)
        change(changed)
        body = build_me_aq_c_init_response(
            mca, changed, b"lid-ca", chall_ca, FORM, revocation=_revocation(world)
        )
        response = S.MeAqCInitResponse(me_aq_c_init_res=body)
        refused(code, open_me_aq_c_init_response, response, state, TrustStore(world.root.der))
    body = build_me_aq_c_init_response(
        mca, request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )
    response = S.MeAqCInitResponse(me_aq_c_init_res=body)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_me_aq_c_init_response, response,
        replace(state, brand_id="otherbrand"), TrustStore(world.root.der),
    )  # fmt: skip
    assert reason == "CA of another brand"


def test_cert_res_checks_the_echoes_and_the_status(world: World) -> None:
    r = _merchant_cert_request(world)
    trust, mca, sig, cert_state, answer = r.trust, r.mca, r.sig, r.state, r.answer

    def answered(changed: CertAnswer, status: int = S.CERT_STATUS_CODE_REJECTED_BY_AGENT,
                 certificates: tuple[bytes, ...] = ()) -> S.CertResponse:  # fmt: skip
        body = build_merchant_cert_response(
            mca, changed, status, revocation=_revocation(world), certificates=certificates
        )
        return S.CertResponse(cert_res=body)

    assert open_merchant_cert_response(answered(answer), cert_state, trust).status == (
        S.CERT_STATUS_CODE_REJECTED_BY_AGENT
    )
    for changed, code in (
        (replace(answer, rrpid=new_id()), ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        (replace(answer, chall_ee3=new_id()), ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        (replace(answer, lid_ee=b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (replace(answer, lid_ca=b"other"), ErrorCode.ERROR_CODE_UNKNOWN_LID),
        (replace(answer, thumbs=(b"\x02" * 32,)), ErrorCode.ERROR_CODE_THUMBS_MISMATCH),
    ):
        refused(code, open_merchant_cert_response, answered(changed), cert_state, trust)
    refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        open_merchant_cert_response, answered(answer, status=99), cert_state, trust,
    )  # fmt: skip
    # "Complete" with only the signature certificate: both are expected.
    ca = world.brand.merchant_ca.ca
    merchant = MerchantData("m-0001", "Corner Shop", False)
    only_sig = issue_merchant(ca, sig.public_key, CertificateUsage.SIGNATURE, merchant)
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_merchant_cert_response,
        answered(answer, REQUEST_COMPLETE, (only_sig,)), cert_state, trust,
    )  # fmt: skip
    assert reason == "two certificates expected"


def test_cert_request_signature_shape(world: World) -> None:
    trust, reg, form = _form(world)
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))

    def with_data(change: Callable[[S.CertReqData], object]):  # type: ignore[no-untyped-def]
        data = S.CertReqData()
        data.CopyFrom(opened.data)
        change(data)
        return replace(opened, data=data)

    # A new-certificate request signed twice (as if a renewal, but naming none).
    twice = replace(opened, signed=type(opened.signed)())
    twice.signed.CopyFrom(opened.signed)
    twice.signed.signatures.append(opened.signed.signatures[0])
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, verify_cert_request, twice, trust)
    assert reason == "unexpected extra signature"
    # EEThumb names a certificate to renew in a new-certificate request.
    eethumb = with_data(lambda d: setattr(d, "ee_thumb", b"\x01" * 32))
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, verify_cert_request, eethumb, trust)
    # A cardholder asks for no key-exchange certificate.
    kex = with_data(
        lambda d: setattr(
            d, "public_key_enc", spki_of(_key(world, KeyUsage.KEY_EXCHANGE).public_key)
        )
    )
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, verify_cert_request, kex, trust)
    # The signature names an extra part (PANData0) that the envelope does not carry.
    stripped = replace(opened, extra=None, extra_type=None)
    reason = refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, verify_cert_request, stripped, trust)
    assert reason == "signed extra part is missing"


# --- the plaintext header of the CA's answers (SET-PROTOCOL.md 3.1) ---------------------


def _headers_are_compared(opens: Callable[[common_pb2.Header], object], rrpid: bytes) -> None:
    """An answer opens under the header the CA sends (its RRPID) and under one naming no
    ids; a header naming another RRPID, or any XID or LID (a registration has none), is
    refused with WRAPPER_MSG_MISMATCH."""
    opens(header(rrpid=rrpid))
    opens(header())
    for naming in (
        header(rrpid=new_id()),
        header(rrpid=rrpid, xid=new_id()),
        header(xid=new_id()),
        header(rrpid=rrpid, lid_c=b"lid-ee"),
        header(rrpid=rrpid, lid_m=b"lid-ee"),
    ):
        reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opens, naming)
        assert "header" in reason


def test_card_c_init_res_header_names_the_signed_rrpid(world: World) -> None:
    trust = TrustStore(world.root.der)
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    body = build_card_c_init_response(_ca(world), request, b"lid-ca", revocation=_revocation(world))

    def opens(plain: common_pb2.Header) -> object:
        response = S.CardCInitResponse(header=plain, card_c_init_res=body)
        return open_card_c_init_response(response, state, trust)

    _headers_are_compared(opens, request.rrpid)


def test_reg_form_res_header_names_the_signed_rrpid(world: World) -> None:
    trust, contact = _contact(world)
    request, reg = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    view = open_reg_form_request(request, _ca(world))
    body = build_reg_form_response(
        _ca(world), view.tbe, new_id(), FORM, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        return open_reg_form_response(
            S.RegFormResponse(header=plain, reg_form_res=body), reg, trust
        )

    _headers_are_compared(opens, request.header.rrpid)


def test_me_aq_c_init_res_header_names_the_signed_rrpid(world: World) -> None:
    request, state = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"),
        "testbrand", b"lid-m",
    )  # fmt: skip
    body = build_me_aq_c_init_response(
        _ca(world, "merchant"), request, b"lid-ca", new_id(), FORM, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        response = S.MeAqCInitResponse(header=plain, me_aq_c_init_res=body)
        return open_me_aq_c_init_response(response, state, TrustStore(world.root.der))

    _headers_are_compared(opens, request.rrpid)


def test_card_cert_res_and_cert_inq_res_headers_name_the_signed_rrpid(world: World) -> None:
    trust, reg, form = _form(world)
    request, state = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    data = open_card_cert_request(peek_cert_request(request), _ca(world)).data
    answer = CertAnswer(data.rrpid, data.lid_ee, data.chall_ee3, data.lid_ca)
    body = build_card_cert_response(
        _ca(world), data.back_key, answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def opens(plain: common_pb2.Header) -> object:
        outcome = open_card_cert_response(S.CertResponse(header=plain, cert_res=body), state, trust)
        assert outcome.status == REQUEST_PENDED
        return outcome

    _headers_are_compared(opens, request.header.rrpid)
    inquiry, inq_state = build_card_cert_inquiry(world.backend, state)
    tbs, _ = read_cert_inquiry(inquiry)
    inq_answer = CertAnswer(tbs.rrpid, tbs.lid_ee, tbs.chall_ee3, tbs.lid_ca)
    inq_body = build_card_cert_response(
        _ca(world), data.back_key, inq_answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def inquiry_opens(plain: common_pb2.Header) -> object:
        response = S.CertInqResponse(header=plain, cert_res=inq_body)
        return open_card_cert_response(response, inq_state, trust)

    _headers_are_compared(inquiry_opens, inquiry.header.rrpid)


def test_merchant_cert_res_and_cert_inq_res_headers_name_the_signed_rrpid(world: World) -> None:
    r = _merchant_cert_request(world)
    rrpid = r.answer.rrpid

    def answering(
        answer: CertAnswer, status: int, state: MerchantRequestState
    ) -> Callable[[common_pb2.Header], object]:
        body = build_merchant_cert_response(r.mca, answer, status, revocation=_revocation(world))

        def opens(plain: common_pb2.Header) -> object:
            outcome = open_merchant_cert_response(
                S.CertResponse(header=plain, cert_res=body), state, r.trust
            )
            assert outcome.status == status
            return outcome

        return opens

    _headers_are_compared(answering(r.answer, REQUEST_PENDED, r.state), rrpid)
    # A CertRes for a request the CA could not decrypt signs only the RRPID.
    _headers_are_compared(
        answering(decryption_error_answer(rrpid), S.CERT_STATUS_CODE_DECRYPTION_ERROR, r.state),
        rrpid,
    )
    inquiry, inq_state = build_merchant_cert_inquiry(world.backend, r.state)
    tbs, _ = read_cert_inquiry(inquiry)
    inq_answer = CertAnswer(tbs.rrpid, tbs.lid_ee, tbs.chall_ee3, tbs.lid_ca)
    body = build_merchant_cert_response(
        r.mca, inq_answer, REQUEST_PENDED, revocation=_revocation(world)
    )

    def inquiry_opens(plain: common_pb2.Header) -> object:
        response = S.CertInqResponse(header=plain, cert_res=body)
        return open_merchant_cert_response(response, inq_state, r.trust)

    _headers_are_compared(inquiry_opens, inquiry.header.rrpid)


def test_the_ca_compares_request_headers_the_same_way(world: World) -> None:
    # The CA's side of 3.1: a request's header may name its RRPID, nothing else.
    card_init, _ = build_card_c_init_request("testbrand", b"lid-ee")

    def card_init_opens(plain: common_pb2.Header) -> object:
        card_init.header.CopyFrom(plain)
        check_card_c_init_request(card_init)
        return card_init

    _headers_are_compared(card_init_opens, card_init.rrpid)
    identity = MerchantIdentity("m-0001", "Corner Shop")
    me_init, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m"
    )

    def me_init_opens(plain: common_pb2.Header) -> object:
        me_init.header.CopyFrom(plain)
        check_me_aq_c_init_request(me_init)
        return me_init

    _headers_are_compared(me_init_opens, me_init.rrpid)
    _, contact = _contact(world)
    reg_form, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee", thumbs=[b"\x01" * 32])
    rrpid = reg_form.header.rrpid

    def reg_form_opens(plain: common_pb2.Header) -> object:
        reg_form.header.CopyFrom(plain)
        return open_reg_form_request(reg_form, _ca(world))

    _headers_are_compared(reg_form_opens, rrpid)


@pytest.mark.parametrize("language", ["", "en\n", "en_GB", "e" * 36])
def test_the_cas_refuse_a_language_that_is_not_a_tag(world: World, language: str) -> None:
    # One rule for every message that names a language (setcore.language), PInitReq's too.
    identity = MerchantIdentity("m-0001", "Corner Shop")
    me_init, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "testbrand", b"lid-m", language=language
    )
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_me_aq_c_init_request, me_init)
    assert "Me-AqCInitReq language" in reason
    _, contact = _contact(world)
    reg_form, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee", language=language)
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_reg_form_request, reg_form, _ca(world)
    )
    assert "RegFormReq language" in reason
