"""Malformed certificate requests the CA refuses, each check broken alone (SET-PROTOCOL.md
4.1-4.3, 3.1): a CertReq's inner RRPID or type, its back key, Thumbs, form, requested keys,
PANData0 and AcctData, and the Me-AqCInitReq / CardCInitReq fields checked before a form.

Every request is built by the requester's own builders (``build_card_cert_request``,
``build_merchant_cert_request``, ``build_me_aq_c_init_request``) with one thing changed:
where the change must stay under the signatures (a requested key, PANData0, AcctData) the
CertReqData is signed again by the requester's key (``_resigned``), so that only the check
under test can refuse it. Each test asserts the code and the reason's words, since without
the check most of these inputs fail later for another reason, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hsm.base import KeyHandle
from setcore import registration_cardholder, registration_certreq
from setcore.encoding import digest
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki import CertificateUsage, der, roles
from setcore.pki.truststore import TrustStore
from setcore.registration import MAX_FORM_TEXT_CHARS, key_thumbprint, spki_of
from setcore.registration_cardholder import build_card_c_init_request, build_card_cert_request
from setcore.registration_cardholder_ca import (
    check_card_c_init_request,
    open_card_cert_request,
    verify_card_cert_request,
)
from setcore.registration_certreq import (
    CERT_REQ_CT,
    OpenedCertRequest,
    build_cert_inquiry,
    chain_of,
    peek_cert_request,
    read_cert_inquiry,
)
from setcore.registration_merchant import (
    GatewayIdentity,
    MerchantIdentity,
    build_me_aq_c_init_request,
)
from setcore.registration_merchant_ca import (
    check_me_aq_c_init_request,
    verify_merchant_cert_request,
)
from setcore.signed import sign
from setpay.v1 import common_pb2, crypto_pb2, registration_pb2

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .refusals import refused
from .registration_support import (
    S,
    _ca,
    _form,
    _key,
    _merchant_cert_request,
    registration_world,
)

DECODING = ErrorCode.ERROR_CODE_DECODING_FAILURE


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


# --- helpers --------------------------------------------------------------------------


def _card_request(
    world: World, **kwargs: object
) -> tuple[registration_pb2.CertRequest, KeyHandle, object]:
    """A cardholder CertReq from the wallet's builder; the new key and the wallet's trust."""
    trust, reg, form = _form(world)
    key = _key(world)
    request, _ = build_card_cert_request(
        world.backend,
        key,
        form,
        reg,
        PAN(TEST_PAN),
        TEST_EXPIRY,
        **kwargs,  # type: ignore[arg-type]
    )
    return request, key, trust


def _inner_tampered(
    world: World, monkeypatch: pytest.MonkeyPatch, change: Callable[[crypto_pb2.Signed], None]
) -> registration_pb2.CertRequest:
    """A cardholder CertReq whose Signed(CertReqData) ``change`` rewrote after signing and
    before sealing: the envelope, its header and its RRPID are sound."""
    sealing = getattr(registration_certreq, "seal")  # noqa: B009 - not exported

    def seal(content_type, plaintext, recipient, *, rrpid, extra):  # type: ignore[no-untyped-def]
        signed = crypto_pb2.Signed.FromString(plaintext)
        change(signed)
        return sealing(
            content_type, signed.SerializeToString(), recipient, rrpid=rrpid, extra=extra
        )

    with monkeypatch.context() as patched:
        patched.setattr(registration_certreq, "seal", seal)
        request, _, _ = _card_request(world)
    return request


def _data_changed(
    change: Callable[[registration_pb2.CertReqData], None],
) -> Callable[[crypto_pb2.Signed], None]:
    def rewrite(signed: crypto_pb2.Signed) -> None:
        data = registration_pb2.CertReqData.FromString(signed.tbs)
        change(data)
        signed.tbs = data.SerializeToString()

    return rewrite


def _resigned(
    world: World,
    opened: OpenedCertRequest,
    key: KeyHandle,
    change: Callable[[registration_pb2.CertReqData], None] = lambda data: None,
    *,
    extra: bytes | None = None,
) -> OpenedCertRequest:
    """``opened`` with its CertReqData rewritten by ``change`` (and the extra part replaced
    by ``extra``, relinked), signed again by ``key`` under the thumbprint of the key the
    rewritten data names: a proof of possession that verifies."""
    data = registration_pb2.CertReqData()
    data.CopyFrom(opened.data)
    change(data)
    if extra is not None:
        assert opened.extra_type is not None
        data.dd_extra = digest(opened.extra_type, extra)
    signed = sign(
        world.backend, key, key_thumbprint(data.public_key_sig), CERT_REQ_CT,
        data.SerializeToString(),
    )  # fmt: skip
    return OpenedCertRequest(
        signed, data, opened.extra_type, extra if extra is not None else opened.extra
    )


def _card_opened(world: World) -> tuple[OpenedCertRequest, KeyHandle, object]:
    request, key, trust = _card_request(world)
    return open_card_cert_request(peek_cert_request(request), _ca(world)), key, trust


# --- the CertReq as the CA opens it (registration_certreq.open_cert_request) -------------


def test_the_untampered_requests_open_and_verify(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the helpers: unchanged, each way of building a request is accepted.
    request = _inner_tampered(world, monkeypatch, lambda signed: None)
    open_card_cert_request(peek_cert_request(request), _ca(world))
    opened, key, trust = _card_opened(world)
    card = verify_card_cert_request(_resigned(world, opened, key), trust)  # type: ignore[arg-type]
    assert card.pan == PAN(TEST_PAN)


def test_a_cert_req_whose_signed_data_names_another_rrpid_than_its_envelope_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3.1: the RRPID the CA keys its answer by is the envelope's; the signed one must agree.
    request = _inner_tampered(
        world, monkeypatch, _data_changed(lambda data: setattr(data, "rrpid", new_id()))
    )
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH,
        open_card_cert_request, peek_cert_request(request), _ca(world),
    )  # fmt: skip
    assert reason == "envelope RRPID differs"


def test_a_sealed_cert_req_holding_a_message_of_another_type_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_type(signed: crypto_pb2.Signed) -> None:
        signed.content_type = "setpay.v1.RegFormReqTBE"

    request = _inner_tampered(world, monkeypatch, other_type)
    reason = refused(DECODING, open_card_cert_request, peek_cert_request(request), _ca(world))
    assert reason == "sealed CertReq holds another type"


def test_a_cardholder_ca_refuses_a_cert_req_of_a_merchant_request_type(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = _inner_tampered(
        world,
        monkeypatch,
        _data_changed(lambda d: setattr(d, "request_type", S.REQUEST_TYPE_MER_INITIAL_BOTH)),
    )
    reason = refused(
        ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED,
        open_card_cert_request, peek_cert_request(request), _ca(world),
    )  # fmt: skip
    assert reason == "not a cardholder request type"


@pytest.mark.parametrize("size", [0, 16, 33])
def test_a_cert_req_with_a_back_key_not_of_32_bytes_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # Without a 32-byte back key no CertRes can be sealed to the wallet (4.1).
    request = _inner_tampered(
        world, monkeypatch, _data_changed(lambda d: setattr(d, "back_key", bytes(size)))
    )
    reason = refused(DECODING, open_card_cert_request, peek_cert_request(request), _ca(world))
    assert reason == "back key must be 32 bytes"


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_cert_req_holding_a_thumbprint_not_of_32_bytes_is_refused(
    world: World, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2.6: Thumbs name certificates by SHA-256. The wallet's builder refuses such a one
    # itself (``thumbs_message``); a requester of its own sends it all the same.
    unchecked = lambda thumbs: common_pb2.Thumbs(thumbs=list(thumbs))  # noqa: E731
    monkeypatch.setattr(registration_cardholder, "thumbs_message", unchecked)
    request, _, _ = _card_request(world, thumbs=[bytes(size)])
    reason = refused(DECODING, open_card_cert_request, peek_cert_request(request), _ca(world))
    assert reason == "malformed Thumbs"


def test_a_cert_req_with_a_form_field_over_its_bound_is_refused(world: World) -> None:
    request, _, _ = _card_request(world, filled=[("name", "x" * (MAX_FORM_TEXT_CHARS + 1))])
    reason = refused(DECODING, open_card_cert_request, peek_cert_request(request), _ca(world))
    assert reason == "registration form too large"


# --- the requested keys and PANData0 (verify_cert_request, verify_card_cert_request) -----


def test_a_requested_key_of_a_type_off_the_allow_list_is_refused_for_its_type(
    world: World,
) -> None:
    opened, key, trust = _card_opened(world)
    odd = spki_of(ed448.Ed448PrivateKey.generate().public_key())  # type: ignore[arg-type]
    changed = _resigned(world, opened, key, lambda d: setattr(d, "public_key_sig", odd))
    reason = refused(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, verify_card_cert_request, changed, trust
    )
    assert reason == "signature key of an unsupported type"


def test_a_requested_key_in_a_second_encoding_is_refused(world: World) -> None:
    # The same P-256 key with its point compressed: another SubjectPublicKeyInfo, so
    # another thumbprint, by which the CA's "never certify a key twice" would be dodged.
    opened, key, trust = _card_opened(world)
    canonical = spki_of(key.public_key)
    point = key.public_key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm (P-256, kept), subjectPublicKey BIT STRING }
    assert canonical[2:4] == bytes([der.SEQUENCE, 0x13])
    algorithm = canonical[2:23]
    compressed = der.encode(der.SEQUENCE, algorithm + der.encode(0x03, b"\x00" + point))
    # The same key, read back from the second encoding.
    assert spki_of(serialization.load_der_public_key(compressed)) == canonical  # type: ignore[arg-type]
    changed = _resigned(world, opened, key, lambda d: setattr(d, "public_key_sig", compressed))
    reason = refused(DECODING, verify_card_cert_request, changed, trust)
    assert reason == "signature key is not canonical DER"


@pytest.mark.parametrize("pan", ["", "4111", "4111x111"])
def test_a_pan_data0_holding_no_card_number_is_refused(world: World, pan: str) -> None:
    # 4.1: PANData0, linked to the signed request by its digest, carries the card number.
    opened, key, trust = _card_opened(world)
    card = registration_pb2.PANData0.FromString(opened.extra or b"")
    card.pan = pan
    changed = _resigned(world, opened, key, extra=card.SerializeToString())
    reason = refused(DECODING, verify_card_cert_request, changed, trust)
    assert reason == "PANData0 holds no card number"


# --- merchant requests (registration_merchant_ca) ----------------------------------------


def _merchant_opened(
    world: World, account: str | None = None
) -> tuple[OpenedCertRequest, KeyHandle, object]:
    r = _merchant_cert_request(world, account)
    return r.opened, r.sig, r.trust


def test_the_untampered_merchant_request_verifies(world: World) -> None:
    opened, sig, trust = _merchant_opened(world, account="acct-1")
    verified = verify_merchant_cert_request(_resigned(world, opened, sig), trust)  # type: ignore[arg-type]
    assert verified.account == "acct-1"


def test_a_key_exchange_key_that_can_only_sign_is_refused(world: World) -> None:
    # An Ed25519 key passes the signature-key allow-list but exchanges no key (4.3.5).
    opened, sig, trust = _merchant_opened(world)
    ed = spki_of(ed25519.Ed25519PrivateKey.generate().public_key())
    changed = _resigned(world, opened, sig, lambda d: setattr(d, "public_key_enc", ed))
    reason = refused(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, verify_merchant_cert_request, changed, trust
    )
    assert reason == "key exchange needs EC or RSA"


@pytest.mark.parametrize("account", ["", "9" * 65])
def test_acct_data_without_a_bounded_account_identification_is_refused(
    world: World, account: str
) -> None:
    opened, sig, trust = _merchant_opened(world, account="acct-1")
    acct = registration_pb2.AcctData.FromString(opened.extra or b"")
    acct.acct_identification = account
    changed = _resigned(world, opened, sig, extra=acct.SerializeToString())
    reason = refused(DECODING, verify_merchant_cert_request, changed, trust)
    assert reason == "account identification"


# --- the first messages: CardCInitReq, Me-AqCInitReq --------------------------------------


@pytest.mark.parametrize("brand", ["", "b" * 65])
def test_a_card_c_init_req_without_a_bounded_brand_is_refused(brand: str) -> None:
    request, _ = build_card_c_init_request("testbrand", b"lid-ee")
    check_card_c_init_request(request)
    request.brand_id = brand
    reason = refused(DECODING, check_card_c_init_request, request)
    assert reason == "CardCInitReq needs a brand"


def _me_aq(request_type: int, identity: object) -> registration_pb2.MeAqCInitRequest:
    request, _ = build_me_aq_c_init_request(request_type, identity, "testbrand", b"lid-m")  # type: ignore[arg-type]
    return request


@pytest.mark.parametrize("brand", ["", "b" * 65])
def test_a_me_aq_c_init_req_without_a_bounded_brand_is_refused(brand: str) -> None:
    request = _me_aq(S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"))
    check_me_aq_c_init_request(request)
    request.brand_id = brand
    reason = refused(DECODING, check_me_aq_c_init_request, request)
    assert reason == "Me-AqCInitReq needs a brand"


def test_a_merchant_request_naming_an_acquirer_is_refused() -> None:
    # IDData of the other kind: a merchant request must name a MerchantAcquirerID.
    request = _me_aq(S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"))
    gateway = _me_aq(S.REQUEST_TYPE_PGWY_INITIAL_BOTH, GatewayIdentity("123456", "Acquirer"))
    request.id_data.CopyFrom(gateway.id_data)
    reason = refused(DECODING, check_me_aq_c_init_request, request)
    assert reason == "merchant request without MerchantAcquirerID"


def test_a_gateway_request_naming_a_merchant_is_refused() -> None:
    request = _me_aq(S.REQUEST_TYPE_PGWY_INITIAL_BOTH, GatewayIdentity("123456", "Acquirer"))
    check_me_aq_c_init_request(request)
    merchant = _me_aq(S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"))
    request.id_data.CopyFrom(merchant.id_data)
    reason = refused(DECODING, check_me_aq_c_init_request, request)
    assert reason == "gateway request without AcquirerID"


def test_a_me_aq_c_init_req_of_a_cardholder_request_type_is_refused() -> None:
    request = _me_aq(S.REQUEST_TYPE_MER_INITIAL_BOTH, MerchantIdentity("m-0001", "Corner Shop"))
    request.request_type = S.REQUEST_TYPE_CARD_INITIAL_SIG
    reason = refused(
        ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, check_me_aq_c_init_request, request
    )
    assert reason == "not a merchant or gateway request"


# --- CertInqReq and the CertRes chain ------------------------------------------------------


def test_a_cert_inq_req_signing_another_content_type_is_refused(world: World) -> None:
    request, _, _ = build_cert_inquiry(world.backend, _key(world), b"lid-ee", b"lid-ca")
    read_cert_inquiry(request)
    signed = crypto_pb2.Signed.FromString(request.cert_inq_req)
    signed.content_type = CERT_REQ_CT
    request.cert_inq_req = signed.SerializeToString()
    reason = refused(DECODING, read_cert_inquiry, request)
    assert reason == "not a CertInqReq"


def test_a_chain_whose_issuing_ca_certificate_is_neither_sent_nor_held_is_refused(
    world: World,
) -> None:
    # A requester keeps its certificate with the CA certificates above it (Credentials):
    # one neither in the CertRes bundle nor in its trust store is missing, not skipped.
    mca = world.brand.merchant_ca.ca
    verified = world.store().verify_chain(
        world.merchant_sig, [mca.der], roles.MERCHANT, CertificateUsage.SIGNATURE
    )
    held = TrustStore(world.root.der)
    assert chain_of(verified, crypto_pb2.CertBundle(certificates=[mca.der]), held) == (mca.der,)
    reason = refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, chain_of, verified, crypto_pb2.CertBundle(), held
    )
    assert reason == "issuing CA certificate missing"
