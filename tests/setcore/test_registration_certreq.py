"""Certificate requests without a server: the CA's checks of proof of possession, the
renewal and CertInqReq signatures, the keys requested and the request's shape."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage, SignatureAlgorithm
from hsm.policy import PSS_SALT_LENGTH
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.pan import PAN
from setcore.registration import (
    FormTemplate,
    completes_form,
    fills_form,
    load_public_key,
    refusal_status,
    spki_of,
)
from setcore.registration_cardholder import build_card_cert_request
from setcore.registration_cardholder_ca import open_card_cert_request
from setcore.registration_certreq import (
    build_cert_inquiry,
    peek_cert_request,
    read_cert_inquiry,
    verify_cert_inquiry,
    verify_cert_request,
)
from tests.hsm.forwarding import ForwardingBackend
from tests.hsm.keycheck import rsa_key_with_exponent

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .registration_support import S, _ca, _form, _key, refused, registration_world


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


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


class _SignsOutside(ForwardingBackend):
    """Signs for ``held``'s handle with ``private_key``, a key no backend takes in (a
    wallet's, say, whose own software holds it): the CA must refuse what it asks for."""

    name = "outside"

    def __init__(self, inner: KeyBackend, private_key: rsa.RSAPrivateKey) -> None:
        super().__init__(inner)
        self.private_key = private_key
        self.held = KeyHandle(
            "odd-e", 1, KeyUsage.SIGNATURE, KeyAlgorithm.RSA_2048, private_key.public_key()
        )

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        if key is not self.held:
            return self.inner.sign(key, data)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
        return self.private_key.sign(data, pss, hashes.SHA256())


def test_a_cert_request_for_an_rsa_key_of_another_exponent_is_refused(world: World) -> None:
    # Signed by the key it asks to certify, as a wallet would send it: a CA that certified
    # it would hand every verifier of that key's signatures a costlier check than setpay
    # allows (and a key no backend holds: ``hsm.policy.algorithm_to_hold``).
    trust, reg, form = _form(world)
    outside = _SignsOutside(world.backend, rsa_key_with_exponent(65539))
    request, _ = build_card_cert_request(
        outside, outside.held, form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    error = _refusal(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, verify_cert_request, opened, trust)
    assert refusal_status(error) == S.CERT_STATUS_CODE_REJECTED_BY_AGENT


def _refusal(code: int, call: Callable[..., object], *args: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value
    return caught.value


def test_requested_keys_are_allow_listed_and_canonical() -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, load_public_key, spki_of(weak), "key")
    # RSA-4096: a size no backend holds, whose every verification costs more (the
    # allow-list reads the size, never the factors: any odd modulus of the size will do).
    modulus = secrets.randbits(4096) | (1 << 4095) | 1
    big = rsa.RSAPublicNumbers(65537, modulus).public_key()
    refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, load_public_key, spki_of(big), "key")
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, load_public_key, b"\x30\x03\x02\x01\x00", "key")


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


def test_a_cardholder_request_names_every_field_of_the_form_once() -> None:
    form = FormTemplate("form-1", ("name", "postcode"), "policy")

    def data(*names: str, form_id: str = "form-1") -> S.CertReqData:
        fields = [S.RegField(name=n, value="") for n in names]
        return S.CertReqData(reg_form_id=form_id, reg_form=fields)

    assert completes_form(data("postcode", "name"), form)
    assert fills_form(data("name"), form) and not completes_form(data("name"), form)
    assert not completes_form(data(), form)
    assert not completes_form(data("name", "postcode", "name"), form)
    assert not completes_form(data("name", "postcode", "other"), form)
    assert not completes_form(data("name", "postcode", form_id="form-2"), form)
