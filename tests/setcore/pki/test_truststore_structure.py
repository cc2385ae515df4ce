"""Chain validation of what a certificate says: issuers that are no CA, unknown critical
extensions, signature algorithms and purposes off the allow-list, another brand, each
refused with its own code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.base import KeyHandle, KeyUsage
from setcore.errors import ErrorCode
from setcore.pki import (
    TrustStore,
    roles,
)
from setcore.pki.issuance import sign_with_backend

from ..refusals import refused
from .conftest import MERCHANT, SIG, World, mca_bundle

# -- structure ------------------------------------------------------------------------------


def _leaf_builder(
    world: World,
    issuer: x509.Name,
    certificate_type: int,
    key: KeyHandle | None = None,
    common_name: str = "odd",
    brand: str | None = None,
) -> x509.CertificateBuilder:
    from setcore.pki import extensions
    from setcore.pki.issuance import key_usage, random_serial

    public_key = (key or world.key(KeyUsage.SIGNATURE)).public_key
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(certificate_type), False)
        .add_extension(extensions.brand_extension(brand or world.root.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
    )


def _signed_by_the_merchant_ca(world: World, builder: x509.CertificateBuilder) -> bytes:
    """``builder``'s certificate, signed by the brand's Merchant CA; its DER."""
    mca = world.brand.merchant_ca.ca
    return sign_with_backend(builder, mca.backend, mca.key).public_bytes(Encoding.DER)


def _refused_as_merchant(world: World, store: TrustStore, code: int, der: bytes) -> str:
    """Validate ``der`` as a merchant's signature certificate under the Merchant CA,
    expecting ``code``; the reason."""
    return refused(code, store.verify_chain, der, mca_bundle(world), roles.MERCHANT, SIG)


def test_issuer_that_is_no_ca_refused(world: World, store: TrustStore) -> None:
    # A "Merchant CA" certificate from the root that is not a CA (cA=FALSE) signs a leaf.
    fake_key = world.key(KeyUsage.SIGNATURE)
    fake = _leaf_builder(
        world, world.root.certificate.subject, roles.MERCHANT_CA, fake_key, "fake CA"
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    fake_der = sign_with_backend(fake, world.backend, world.root.key).public_bytes(Encoding.DER)
    leaf = _leaf_builder(
        world, x509.load_der_x509_certificate(fake_der).subject, roles.MERCHANT
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    leaf_der = sign_with_backend(leaf, world.backend, fake_key).public_bytes(Encoding.DER)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        store.verify_chain,
        leaf_der,
        [fake_der],
        roles.MERCHANT,
        SIG,
    )
    assert "issuer is not a CA" in reason


def test_unknown_critical_extension_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = (
        _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
    )
    der = _signed_by_the_merchant_ca(world, builder)
    _refused_as_merchant(world, store, ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION, der)


def test_signature_algorithm_off_the_allow_list_refused(world: World, store: TrustStore) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), True
    )
    sha384 = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA384())
    pss_salt_20 = builder.sign(
        rsa.generate_private_key(65537, 2048),
        hashes.SHA256(),
        rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
    )
    pkcs1 = builder.sign(rsa.generate_private_key(65537, 2048), hashes.SHA256())
    for cert in (sha384, pss_salt_20, pkcs1):
        der = cert.public_bytes(Encoding.DER)
        _refused_as_merchant(world, store, ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, der)


def test_end_entity_marked_ca_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), True
    )
    der = _signed_by_the_merchant_ca(world, builder)
    reason = _refused_as_merchant(world, store, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, der)
    assert "marked as a CA" in reason


def test_certificate_of_another_brand_refused(world: World, store: TrustStore) -> None:
    mca = world.brand.merchant_ca.ca
    builder = _leaf_builder(world, mca.certificate.subject, roles.MERCHANT, brand="otherbrand")
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    der = _signed_by_the_merchant_ca(world, builder)
    reason = _refused_as_merchant(world, store, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, der)
    assert "another brand" in reason


def test_a_certificate_restricted_to_other_purposes_is_refused(
    world: World, store: TrustStore
) -> None:
    # An extendedKeyUsage limits a certificate to the purposes it lists (RFC 5280
    # 4.2.1.12); setpay defines none, so one limited to TLS is no SET certificate.
    from cryptography.x509.oid import ExtendedKeyUsageOID

    mca = world.brand.merchant_ca.ca
    for purposes, critical in (
        ([ExtendedKeyUsageOID.SERVER_AUTH], False),
        ([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING], False),
        ([ExtendedKeyUsageOID.SERVER_AUTH], True),
    ):
        builder = (
            _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage(purposes), critical=critical)
        )
        der = _signed_by_the_merchant_ca(world, builder)
        reason = _refused_as_merchant(
            world, store, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, der
        )
        assert "extendedKeyUsage" in reason
    # anyExtendedKeyUsage restricts nothing.
    builder = (
        _leaf_builder(world, mca.certificate.subject, roles.MERCHANT)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), False)
    )
    der = _signed_by_the_merchant_ca(world, builder)
    store.verify_chain(der, mca_bundle(world), roles.MERCHANT, SIG)
