"""Certificates and CRLs: signed low-S, verified with either s (``setcore.pki.chain``).

A bank whose root and CAs were certified before setpay signed low-S keeps working: a
high-S certificate, CRL or BCI is not refused. Anyone can make a certificate's twin,
(r, n - s), another thumbprint with the same contents; validation gives it the
certificate's verdict, revocation included, and a path through a CA certificate's twin,
or a CRL's twin, is refused rather than used.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509

from hsm.software import SoftwareBackend
from setcore import signed as signed_module
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki import backend_key
from setcore.pki.roles import CARDHOLDER, PAYMENT_GATEWAY, CertificateUsage
from setcore.profiles import EC
from setcore.signers import signer
from setpay.v1 import crypto_pb2

from .certified import refused
from .high_s import certificate_twin, crl_twin, high_s, is_high_s
from .pki.conftest import World, make_world

SIG = CertificateUsage.SIGNATURE


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(SoftwareBackend.ephemeral(), EC)


@pytest.fixture(scope="module")
def before_low_s() -> Iterator[World]:
    """A brand certified by a setpay that did not yet sign low-S: every certificate, CRL
    and the BCI high-S, as about half of such a bank's were."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(backend_key, "low_s", high_s)
        patched.setattr(signed_module, "low_s", high_s)
        yield make_world(SoftwareBackend.ephemeral(), EC)


def test_a_bank_certified_high_s_keeps_working(before_low_s: World) -> None:
    world = before_low_s
    pca = world.brand.gateway_ca.ca
    assert is_high_s(world.root.certificate.signature)
    assert is_high_s(pca.certificate.signature)
    assert is_high_s(x509.load_der_x509_certificate(world.gateway_sig).signature)
    assert all(is_high_s(x509.load_der_x509_crl(crl).signature) for crl in world.crls)
    store = world.store()  # the high-S root pinned, the high-S BCI and CRLs installed
    verified = store.verify_chain(world.gateway_sig, [pca.der], PAYMENT_GATEWAY, SIG)
    assert verified.thumbprint == thumbprint(world.gateway_sig)


def test_a_certificates_twin_has_its_verdict_revocation_included(world: World) -> None:
    cca = world.brand.cardholder_ca.ca
    twin = certificate_twin(world.cardholder)
    assert twin != world.cardholder
    verified = world.store().verify_chain(twin, [cca.der], CARDHOLDER, SIG)
    assert verified.thumbprint == thumbprint(twin)
    assert verified.serial_number == x509.load_der_x509_certificate(world.cardholder).serial_number
    # Revoked by serial: the certificate and its twin alike.
    store = world.store()
    assert store.update_revocation(*world.publish(2, {cca.thumbprint: [verified.serial_number]}))
    for der in (world.cardholder, twin):
        refused(
            ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
            store.verify_chain, der, [cca.der], CARDHOLDER, SIG,
        )  # fmt: skip


def test_a_path_through_a_ca_certificates_twin_is_refused(world: World) -> None:
    """The BCI names the Cardholder CA's CRL by that CA's thumbprint: its twin has none."""
    twin = certificate_twin(world.brand.cardholder_ca.ca.der)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        world.store().verify_chain, world.cardholder, [twin], CARDHOLDER, SIG,
    )  # fmt: skip
    assert "lists no CRL for this CA" in reason


def test_a_crls_twin_is_not_the_crl_the_bci_names(world: World) -> None:
    bci, crls = world.publish(2)
    twins = (crl_twin(crls[0]), *crls[1:])
    store = world.store()
    reason = refused(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, store.update_revocation, bci, twins)
    assert "a CRL listed in the BCI is missing" in reason
    assert store.update_revocation(bci, crls)


def test_a_twin_named_by_a_signature_is_the_same_signer(world: World) -> None:
    """A relay may swap a signature's certificate thumbprint (not signed) for the twin's
    and add the twin to the bundle: the same signer verifies, with the same contents; an
    opener that pins a thumbprint (``signers.signer(only=...)``) refuses the swap, as it
    would a dropped message."""
    pca = world.brand.gateway_ca.ca.der
    twin = certificate_twin(world.gateway_sig)
    store = world.store()
    original = crypto_pb2.CertBundle(certificates=[world.gateway_sig, pca])
    swapped = crypto_pb2.CertBundle(certificates=[twin, pca])
    by_original = store.resolve(thumbprint(world.gateway_sig), original, PAYMENT_GATEWAY, SIG)
    by_twin = store.resolve(thumbprint(twin), swapped, PAYMENT_GATEWAY, SIG)
    assert by_twin.cert.subject == by_original.cert.subject
    assert by_twin.serial_number == by_original.serial_number
    assert by_twin.public_key == by_original.public_key
    pinned = signer(store, PAYMENT_GATEWAY, only=thumbprint(world.gateway_sig))
    signature = crypto_pb2.Signature(signer_cert_thumb=thumbprint(twin))
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, pinned, signature, swapped)
