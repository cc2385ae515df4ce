"""ECDSA low-S: setpay signs with s <= n/2 only and refuses the twin (r, n - s).

For every valid ECDSA signature (r, s), (r, n - s) verifies too: anyone holding a signed
message could make a second encoding of it. Each verifying entry point is shown refusing
such a twin (SIGNATURE_FAILURE, with the reason saying why): ``verify_signature`` (known
answers in ``test_vectors``; here the CertReq and CertInq signatures it checks directly),
``open_signed`` on a Signed, Enc and EncB message, ``verify_detached`` (the dual
signature) and a signed Error. Twins are made either from the message as sent, or by
having setcore's signer emit the high-S twin of what it would sign (``signing_high_s``):
the same transformation, applied before an envelope seals the signature in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from hsm.base import KeyBackend, KeyUsage
from hsm.software import SoftwareBackend
from setcore import signed as signed_module
from setcore.authorization import (
    AuthDecision,
    AuthRequestState,
    build_auth_request,
    build_auth_response,
    open_auth_request,
    open_auth_response,
)
from setcore.capture import build_capture_response, open_capture_request, open_capture_response
from setcore.credentials import Credentials
from setcore.error_message import build_error, open_error
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN
from setcore.pki import CertificateUsage, TrustStore, issue_gateway
from setcore.pki.bci import issue_brand_crl_identifier
from setcore.pki.crl import issue_crl
from setcore.pki.roles import PAYMENT_GATEWAY
from setcore.profiles import EC
from setcore.purchase import (
    build_pinit_request,
    build_pinit_response,
    open_pinit_response,
    open_purchase_request,
    verify_purchase,
)
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
from setcore.signed import sign
from setpay.v1 import (
    authorization_pb2,
    capture_pb2,
    common_pb2,
    crypto_pb2,
    purchase_pb2,
    registration_pb2,
)

from .capture_support import capture_item, capture_request, decisions_for
from .certified import Certified, certify
from .high_s import P256_ORDER, HighSBackend, high_s, is_high_s
from .pinning_support import gateway_of
from .pki.conftest import TEST_EXPIRY, TEST_PAN, World, make_world
from .refusals import refused
from .registration_support import _ca, _form, _key
from .test_purchase import Shop, _preq, _shop

# Signatures made through ``HighSBackend``, each of which would go out high-S without
# setcore's normalization: a handful shows it, more only costs time.
SIGNATURES_PER_SIGNER = 20
CERTIFICATES_PER_SIGNER = 5
WHY = "s above n/2"


def twin(der: bytes) -> bytes:
    """(r, n - s): the other signature that plain ECDSA verification accepts."""
    r, s = decode_dss_signature(der)
    return encode_dss_signature(r, P256_ORDER - s)


@contextmanager
def signing_high_s(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside, setcore's signer emits the high-S twin of every ECDSA signature it makes."""
    with monkeypatch.context() as patched:
        # raising=False: on code without low-S signing the attribute is simply unused.
        patched.setattr(signed_module, "low_s", high_s, raising=False)
        yield


def _refused_high_s(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    reason = refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, call, *args, **kwargs)
    assert WHY in reason, reason


@pytest.fixture
def ec(backend: KeyBackend) -> Certified:
    return certify(backend, EC)


@pytest.fixture(scope="module")
def world() -> World:
    """A brand of the EC profile, for the registration messages."""
    return make_world(SoftwareBackend.ephemeral(), EC)


# --- signers: low-S even from a backend that returns high-S ----------------------------
# Every backend returns low-S (``tests/hsm/test_low_s``), so only a backend that does not
# shows setcore's own normalization at work: ``HighSBackend`` turns every signature into
# its high-S twin.


def test_setcore_signs_low_s_only(ec: Certified) -> None:
    c = ec.merchant
    backend = HighSBackend(c.backend)
    for n in range(SIGNATURES_PER_SIGNER):
        made = sign(backend, c.signature_key, c.signature_thumb, "setpay.v1.X", n.to_bytes(4))
        assert not is_high_s(made.signatures[0].value), n


def test_certificates_and_crls_are_signed_low_s_only(ec: Certified) -> None:
    """Low-S although verifiers accept either (``setcore.pki.chain``): of a certificate's
    two encodings, the one setpay issued is the low-S one."""
    real = ec.world.brand.gateway_ca.ca
    pca = replace(real, backend=HighSBackend(real.backend))
    key = ec.world.key(KeyUsage.SIGNATURE)
    for n in range(CERTIFICATES_PER_SIGNER):
        der = issue_gateway(pca, key.public_key, CertificateUsage.SIGNATURE, f"gateway-{n}")
        assert not is_high_s(x509.load_der_x509_certificate(der).signature), n
        crl = issue_crl(pca, [], n + 1)
        assert not is_high_s(x509.load_der_x509_crl(crl).signature), n


# --- open_signed: a Signed message (PInitRes) -----------------------------------------


def test_a_pinitres_twin_is_refused(ec: Certified) -> None:
    shop = _shop(ec)
    request, state = build_pinit_request(shop.card.pan, ec.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(
        lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id(), preq_date_unix_ms=now_ms(), language="en"
    )
    kex = ec.gateway.key_exchange_cert or b""
    response = build_pinit_response(
        ec.merchant, request, trans, new_id(), kex, (ec.world.brand.gateway_ca.ca.der,)
    )
    open_pinit_response(response, state, ec.trust())  # as sent, it verifies
    forged = crypto_pb2.Signed.FromString(response.p_init_res)
    forged.signatures[0].value = twin(forged.signatures[0].value)
    response.p_init_res = forged.SerializeToString()
    _refused_high_s(open_pinit_response, response, state, ec.trust())


# --- verify_detached: the cardholder's dual signature ---------------------------------


def test_a_dual_signature_twin_is_refused(ec: Certified, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = _shop(ec)
    with signing_high_s(monkeypatch):
        preq = _preq(shop)
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    _refused_high_s(verify_purchase, view, shop.order, ec.trust())


# --- open_signed inside EncB: AuthReq at the gateway, AuthRes at the merchant ---------


def _auth_request(shop: Shop) -> tuple[authorization_pb2.AuthorizeRequest, AuthRequestState]:
    c = shop.c
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(_preq(shop)))
    return build_auth_request(
        c.merchant, c.gateway_kex, view.pi_bytes, shop.order.trans_ids, view.oi_bytes,
        shop.order.description, shop.order.amount, view.oi_data.od_salt, shop.order.amount,
        c.merchant_id,
    )  # fmt: skip


def test_an_auth_request_twin_is_refused(ec: Certified, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = _shop(ec)
    with signing_high_s(monkeypatch):
        request, _ = _auth_request(shop)
    _refused_high_s(open_auth_request, request, ec.gateway, ec.trust())


def test_an_auth_response_twin_is_refused(ec: Certified, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = _shop(ec)
    request, state = _auth_request(shop)
    verified = open_auth_request(request, ec.gateway, ec.trust())
    decision = AuthDecision(authorization_pb2.AUTH_CODE_APPROVED, shop.order.amount)
    with signing_high_s(monkeypatch):
        payload = build_auth_response(ec.gateway, verified, decision)
    response = authorization_pb2.AuthorizeResponse(auth_res=payload)
    _refused_high_s(
        open_auth_response,
        response,
        ec.merchant,
        state,
        ec.trust(),
        gateway_identity=gateway_of(ec),
    )


# --- open_signed inside Enc: CapRes at the merchant -----------------------------------


def test_a_capture_response_twin_is_refused(ec: Certified, monkeypatch: pytest.MonkeyPatch) -> None:
    request, state = capture_request(ec, [capture_item(ec, 1000)])
    verified = open_capture_request(request, ec.gateway, ec.trust(), ec.token_key)
    with signing_high_s(monkeypatch):
        payload = build_capture_response(ec.gateway, verified, decisions_for(verified))
    response = capture_pb2.CaptureResponse(cap_res=payload)
    _refused_high_s(
        open_capture_response,
        response,
        ec.merchant,
        state,
        ec.trust(),
        gateway_identity=gateway_of(ec),
    )


# --- a signed Error: a twin is no word of the peer ------------------------------------


def test_a_signed_error_twin_is_not_the_peers_word(
    ec: Certified, monkeypatch: pytest.MonkeyPatch
) -> None:
    rrpid, sent = new_id(), new_id()
    code = ErrorCode.ERROR_CODE_DECODING_FAILURE
    honest = build_error(ec.gateway, code, rrpid=rrpid, request=sent)
    opened = open_error(honest, ec.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=sent)
    assert isinstance(opened, PeerError)
    with signing_high_s(monkeypatch):
        error = build_error(ec.gateway, code, rrpid=rrpid, request=sent)
    opened = open_error(error, ec.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=sent)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE and WHY in opened.reason


# --- verify_signature directly: CertReq (both signatures) and CertInq -----------------


def test_cert_request_twins_are_refused(world: World) -> None:
    trust, reg, form = _form(world, registration_pb2.REQUEST_TYPE_CARD_RENEWAL_SIG)
    cca = world.brand.cardholder_ca.ca
    renewing = Credentials(world.backend, world.cardholder_key, world.cardholder, (cca.der,))
    request, _ = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY, renewing=renewing
    )
    opened = open_card_cert_request(peek_cert_request(request), _ca(world))
    assert verify_cert_request(opened, trust).renewed is not None  # as sent, it verifies
    for index in (0, 1):  # the new key's proof of possession, then the renewed certificate's
        forged = crypto_pb2.Signed()
        forged.CopyFrom(opened.signed)
        forged.signatures[index].value = twin(forged.signatures[index].value)
        _refused_high_s(verify_cert_request, replace(opened, signed=forged), trust)


def test_a_cert_inquiry_twin_is_refused(world: World) -> None:
    key = _key(world)
    request, _, _ = build_cert_inquiry(world.backend, key, b"lid-ee", b"lid-ca")
    _, signed = read_cert_inquiry(request)
    spki = spki_of(key.public_key)
    verify_cert_inquiry(signed, spki)  # as sent, it verifies
    signed.signatures[0].value = twin(signed.signatures[0].value)
    _refused_high_s(verify_cert_inquiry, signed, spki)


# --- the one exception: a BCI made before setpay signed low-S -------------------------


def test_a_high_s_bci_is_still_installed(ec: Certified, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bank's current BCI may predate low-S signing; refusing it would stop every
    chain check until the next one (``setcore.pki.bci``)."""
    world = ec.world
    pairs = list(zip((world.root.der, *(ca.der for ca in world.cas)), world.crls, strict=True))
    with signing_high_s(monkeypatch):
        bci = issue_brand_crl_identifier(world.root, 7, pairs)
    assert is_high_s(crypto_pb2.Signed.FromString(bci).signatures[0].value)
    store = TrustStore(world.root.der)
    assert store.update_revocation(bci, world.crls)
