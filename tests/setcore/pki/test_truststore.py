"""Chain validation: every role accepted, and a certificate in another role than asked
refused with its own code (time and signatures: ``test_truststore_validity``; what a
certificate says: ``test_truststore_structure``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.base import KeyUsage
from setcore.envelope import open_sealed, seal
from setcore.errors import ErrorCode
from setcore.pki import (
    TrustStore,
    issue_tls_server,
    roles,
)
from setcore.pki.issuance import sign_with_backend

from ..refusals import refused
from .conftest import KEX, MERCHANT, SIG, World, cca_bundle, mca_bundle, pca_bundle

# -- accepted -------------------------------------------------------------------------


def test_every_role_verifies(world: World, store: TrustStore) -> None:
    card = store.verify_chain(world.cardholder, cca_bundle(world), roles.CARDHOLDER, SIG)
    assert card.blinded_account is not None and len(card.blinded_account) == 32
    assert card.merchant_data is None and card.kem is None
    merchant = store.verify_chain(
        world.merchant_sig, mca_bundle(world), roles.MERCHANT, "signature"
    )
    assert merchant.merchant_data == MERCHANT and merchant.subject_id == "m-0001"
    merchant_kex = store.verify_chain(world.merchant_kex, mca_bundle(world), roles.MERCHANT, KEX)
    assert merchant_kex.kem is not None and merchant_kex.usage is KEX
    gateway = store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)
    assert gateway.certificate_type == roles.PAYMENT_GATEWAY
    assert gateway.chain_thumbs[-1] == store.root_thumb
    assert len(gateway.chain_thumbs) == 3
    assert gateway.brand_id == "testbrand"
    assert gateway.not_after <= world.brand.gateway_ca.ca.certificate.not_valid_after_utc


def test_ca_certificates_verify_in_their_roles(world: World, store: TrustStore) -> None:
    for sub, kind in zip(
        world.brand.subordinates,
        (roles.CARDHOLDER_CA, roles.MERCHANT_CA, roles.PAYMENT_GATEWAY_CA),
        strict=True,
    ):
        store.verify_chain(sub.key_exchange_der, [sub.ca.der], kind, KEX)
        store.verify_chain(sub.ca.der, [], kind, SIG)
    root = store.verify_chain(world.root.der, [], roles.BRAND_ROOT, SIG)
    assert root.chain_thumbs == (store.root_thumb,)


def test_recipient_seals_to_the_key_holder(world: World, store: TrustStore) -> None:
    verified = store.verify_chain(world.gateway_kex, pca_bundle(world), roles.PAYMENT_GATEWAY, KEX)
    recipient = verified.recipient()
    assert recipient.cert_thumb == verified.thumbprint
    assert recipient.kem is world.gateway_kex_key.kem or recipient.kem.value.startswith("p256")
    sealed = seal("setpay.v1.Test", b"payment instructions", recipient)
    opened = open_sealed(
        sealed, world.backend, world.gateway_kex_key, verified.thumbprint, "setpay.v1.Test"
    )
    assert opened.plaintext == b"payment instructions"
    signature = store.verify_chain(world.gateway_sig, pca_bundle(world), roles.PAYMENT_GATEWAY, SIG)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, signature.recipient)


def test_repr_shows_no_key_material(world: World, store: TrustStore) -> None:
    card = store.verify_chain(world.cardholder, cca_bundle(world), roles.CARDHOLDER, SIG)
    text = repr(card)
    assert "CERTIFICATE_TYPE_CARDHOLDER" in text
    assert card.blinded_account is not None
    assert card.blinded_account.hex() not in text and repr(card.blinded_account) not in text


# -- roles ------------------------------------------------------------------------------


def test_wrong_certificate_type_refused(world: World, store: TrustStore) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.merchant_sig,
        mca_bundle(world),
        roles.CARDHOLDER,
        SIG,
    )
    assert "CERTIFICATE_TYPE_MERCHANT where CERTIFICATE_TYPE_CARDHOLDER" in reason


def test_merchant_key_exchange_refused_where_gateway_required(
    world: World, store: TrustStore
) -> None:
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.merchant_kex,
        mca_bundle(world),
        roles.PAYMENT_GATEWAY,
        KEX,
    )


def test_signature_certificate_refused_where_key_exchange_required(
    world: World, store: TrustStore
) -> None:
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.gateway_sig,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        KEX,
    )
    assert "signature certificate where key-exchange" in reason
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.gateway_kex,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )
    # A CA key is never a key-exchange key either.
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        world.brand.merchant_ca.ca.der,
        [],
        roles.MERCHANT_CA,
        KEX,
    )


def _forge_with_wrong_ca(world: World, certificate_type: int, issuer_index: int) -> bytes:
    """A certificate of ``certificate_type`` signed by a CA of the wrong kind."""
    from setcore.pki import extensions
    from setcore.pki.issuance import key_usage, random_serial

    ca = world.cas[issuer_index]
    key = world.key(KeyUsage.SIGNATURE)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key)
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(certificate_type), False)
        .add_extension(extensions.brand_extension(ca.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
        .add_extension(extensions.blinded_account_extension(b"\x00" * 32), False)
    )
    return sign_with_backend(builder, ca.backend, ca.key).public_bytes(Encoding.DER)


def test_merchant_certificate_from_cardholder_ca_refused(world: World, store: TrustStore) -> None:
    forged = _forge_with_wrong_ca(world, roles.MERCHANT, issuer_index=0)
    reason = refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        forged,
        cca_bundle(world),
        roles.MERCHANT,
        SIG,
    )
    assert "issued by a CERTIFICATE_TYPE_CARDHOLDER_CA" in reason


def test_cardholder_certificate_from_gateway_ca_refused(world: World, store: TrustStore) -> None:
    forged = _forge_with_wrong_ca(world, roles.CARDHOLDER, issuer_index=2)
    refused(
        ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
        store.verify_chain,
        forged,
        pca_bundle(world),
        roles.CARDHOLDER,
        SIG,
    )


def test_tls_certificate_is_no_set_certificate(world: World, store: TrustStore) -> None:
    tls = issue_tls_server(world.brand.gateway_ca.ca)
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        tls.certificate_der,
        pca_bundle(world),
        roles.PAYMENT_GATEWAY,
        SIG,
    )
