"""Chain validation in time and in signatures: expired or not yet valid certificates and CAs,
tampered signatures, missing links, look-alike brands, each refused with its own code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hsm.base import KeyUsage
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki import (
    TrustStore,
    create_brand,
    issue_gateway,
    issue_merchant,
    roles,
)
from setcore.pki.certificate import load_certificate
from setcore.signers import signer
from setpay.v1 import crypto_pb2

from ..refusals import refused
from .conftest import KEX, MERCHANT, SIG, World, later, mca_bundle, pca_bundle

# -- validity ---------------------------------------------------------------------------


def test_expired_certificate_refused(world: World, store: TrustStore) -> None:
    key = world.key(KeyUsage.SIGNATURE)
    expired = issue_gateway(
        world.brand.gateway_ca.ca,
        key.public_key,
        SIG,
        "old",
        at=datetime.now(UTC) - timedelta(days=30),
        lifetime=timedelta(days=10),
    )
    reason = refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        expired,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )
    ends = load_certificate(expired).not_valid_after_utc
    assert reason == f"certificate 'old' ended at {ends:%Y-%m-%d %H:%M:%S} UTC", reason


def test_a_signer_is_resolved_as_of_the_instant_asked(world: World) -> None:
    # A decided request's answer is rebuilt as of its decision: its signer's certificate
    # is judged at that instant, not now. (No revocation data covers a month ahead, so
    # this store does without it.)
    store = TrustStore(world.root.der, require_revocation=False)
    key = world.key(KeyUsage.SIGNATURE)
    future = issue_gateway(world.brand.gateway_ca.ca, key.public_key, SIG, "future", at=later(30))
    signature = crypto_pb2.Signature(signer_cert_thumb=thumbprint(future))
    bundle = crypto_pb2.CertBundle(certificates=[future, *pca_bundle(world)])
    _, verified = signer(store, roles.PAYMENT_GATEWAY, at=later(31))(signature, bundle)
    assert verified.subject_id == "future"
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        signer(store, roles.PAYMENT_GATEWAY),
        signature,
        bundle,
    )


def test_not_yet_valid_certificate_refused(world: World, store: TrustStore) -> None:
    key = world.key(KeyUsage.SIGNATURE)
    future = issue_gateway(world.brand.gateway_ca.ca, key.public_key, SIG, "future", at=later(30))
    reason = refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        future,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )
    begins = load_certificate(future).not_valid_before_utc
    assert reason.startswith(
        f"certificate 'future' is not valid before {begins:%Y-%m-%d %H:%M:%S} UTC: "
    ), reason
    assert "this machine's clock is behind its issuer's" in reason


def test_expired_ca_refused(world: World) -> None:
    store = TrustStore(world.root.der, require_revocation=False)
    # Past the CA's notAfter: the leaf was clipped to it, so the whole chain is expired.
    at = world.brand.merchant_ca.ca.certificate.not_valid_after_utc + timedelta(seconds=1)
    refused(
        ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
        store.verify_chain,
        world.brand.merchant_ca.key_exchange_der,
        mca_bundle(world),
        roles.MERCHANT_CA,
        KEX,
        at=at,
    )


# -- signatures and chains ----------------------------------------------------------------


def test_tampered_certificate_signature_refused(world: World, store: TrustStore) -> None:
    tampered = bytearray(world.merchant_sig)
    tampered[-2] ^= 0x40  # inside the signature value
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        bytes(tampered),
        mca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "signature does not verify" in reason


def test_tampered_ca_certificate_refused(world: World, store: TrustStore) -> None:
    tampered = bytearray(world.brand.merchant_ca.ca.der)
    tampered[-3] ^= 0x01
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        world.merchant_sig,
        [bytes(tampered)],
        roles.MERCHANT,
        SIG,
    )


def test_missing_intermediate_refused(world: World, store: TrustStore) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        world.merchant_sig,
        [],
        roles.MERCHANT,
        SIG,
    )
    assert "no chain to the pinned brand root" in reason


def test_garbage_refused(store: TrustStore) -> None:
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        b"\x30\x03\x02\x01\x00",
        [],
        roles.MERCHANT,
        SIG,
    )


def test_chain_of_a_look_alike_brand_refused(world: World, store: TrustStore) -> None:
    # Same brand name, same subject names, different keys: names match, signatures do not.
    other = create_brand(
        world.backend, world.profile, "testbrand", label_prefix=f"{world.profile.name}-evil-"
    )
    key = world.key(KeyUsage.SIGNATURE)
    evil = issue_merchant(other.merchant_ca.ca, key.public_key, SIG, MERCHANT)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        evil,
        [other.merchant_ca.ca.der, other.root.der],
        roles.MERCHANT,
        SIG,
    )
    assert "signature does not verify" in reason


def test_root_must_be_a_setpay_brand_root(world: World) -> None:
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, TrustStore, world.brand.merchant_ca.ca.der)
