"""What setpay's certificates contain, and what the issuing functions refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from hsm.base import KemAlgorithm, KeyBackend, KeyUsage
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError
from setcore.pan import PAN
from setcore.pki import (
    CertificateUsage,
    IssuingCA,
    card_expiry_end,
    create_brand_root,
    issue_cardholder,
    issue_gateway,
    issue_merchant,
    kem_for,
    roles,
)
from setcore.pki import extensions as ext
from setcore.pki.issuance import SERIAL_BITS, issue_ca_certificate

from .conftest import MERCHANT, TEST_PAN, World


def _load(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _ku(cert: x509.Certificate) -> x509.KeyUsage:
    extension = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert extension.critical
    return extension.value


def _bc(cert: x509.Certificate) -> x509.BasicConstraints:
    extension = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert extension.critical
    return extension.value


def test_root_is_self_signed_brand_ca(world: World) -> None:
    root = _load(world.root.der)
    root.verify_directly_issued_by(root)
    assert _bc(root).ca and _bc(root).path_length == 1
    usage = _ku(root)
    assert usage.key_cert_sign and usage.crl_sign and usage.digital_signature
    assert ext.read_certificate_type(root) == roles.BRAND_ROOT
    assert ext.read_brand(root) == "testbrand"


def test_subordinate_cas(world: World) -> None:
    root = _load(world.root.der)
    expected = [roles.CARDHOLDER_CA, roles.MERCHANT_CA, roles.PAYMENT_GATEWAY_CA]
    for sub, certificate_type in zip(world.brand.subordinates, expected, strict=True):
        cert = _load(sub.ca.der)
        cert.verify_directly_issued_by(root)
        assert _bc(cert).ca and _bc(cert).path_length == 0
        assert _ku(cert).key_cert_sign
        assert ext.read_certificate_type(cert) == certificate_type
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        # The CA's own key-exchange certificate: issued by the CA, same type, not a CA.
        kex = _load(sub.key_exchange_der)
        kex.verify_directly_issued_by(cert)
        assert not _bc(kex).ca
        assert ext.read_certificate_type(kex) == certificate_type
        assert ext.read_kem(kex) is kem_for(sub.key_exchange_key)


def test_key_usage_follows_role_and_key(world: World) -> None:
    sig = _ku(_load(world.merchant_sig))
    assert sig.digital_signature and not sig.key_agreement and not sig.key_encipherment
    kex = _ku(_load(world.gateway_kex))
    assert not kex.digital_signature
    if world.profile.name == "ec":
        assert kex.key_agreement and not kex.key_encipherment
        assert ext.read_kem(_load(world.gateway_kex)) is KemAlgorithm.P256_HKDF_SHA256
    else:
        assert kex.key_encipherment and not kex.key_agreement
        assert ext.read_kem(_load(world.gateway_kex)) is KemAlgorithm.RSA_OAEP_SHA256
    assert ext.read_kem(_load(world.gateway_sig)) is None


def test_cardholder_certificate_hides_the_pan(world: World) -> None:
    cert = _load(world.cardholder)
    blob = world.cardholder
    assert TEST_PAN.encode() not in blob
    assert PAN(TEST_PAN).last4.encode() not in cert.subject.rfc4514_string().encode()
    assert len(ext.read_blinded_account(cert) or b"") == 32
    assert ext.read_certificate_type(cert) == roles.CARDHOLDER
    common_name = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert len(str(common_name)) == 32 and not str(common_name).isdigit()


def test_cardholder_validity_stops_at_card_expiry(ec_world: World) -> None:
    ca = ec_world.brand.cardholder_ca.ca
    key = ec_world.key(KeyUsage.SIGNATURE)
    soon = datetime.now(UTC) + timedelta(days=40)
    expiry = f"{soon.year:04d}{soon.month:02d}"
    cert = _load(issue_cardholder(ca, key.public_key, b"\x01" * 32, card_expiry_end(expiry)))
    assert cert.not_valid_after_utc == card_expiry_end(expiry)
    assert cert.not_valid_after_utc < datetime.now(UTC) + timedelta(days=80)


def test_expired_card_is_refused(ec_world: World) -> None:
    ca = ec_world.brand.cardholder_ca.ca
    key = ec_world.key(KeyUsage.SIGNATURE)
    with pytest.raises(ConfigurationError, match="validity window is empty"):
        issue_cardholder(ca, key.public_key, b"\x01" * 32, card_expiry_end("202001"))


def test_child_never_outlives_issuer(ec_world: World) -> None:
    ca = ec_world.brand.merchant_ca.ca
    key = ec_world.key(KeyUsage.SIGNATURE)
    der = issue_merchant(
        ca, key.public_key, CertificateUsage.SIGNATURE, MERCHANT, lifetime=timedelta(days=99999)
    )
    assert _load(der).not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_serials_are_random_and_159_bits_at_most(world: World) -> None:
    serials = {_load(d).serial_number for d in (world.merchant_sig, world.merchant_kex)}
    serials |= {_load(world.gateway_sig).serial_number, _load(world.cardholder).serial_number}
    assert len(serials) == 4
    assert all(0 < s < 2**SERIAL_BITS for s in serials)
    assert max(s.bit_length() for s in serials) > 140  # random, not a counter


def test_merchant_data_in_merchant_certificates(world: World) -> None:
    for der in (world.merchant_sig, world.merchant_kex):
        assert ext.read_merchant_data(_load(der)) == MERCHANT


def test_wrong_ca_for_the_certificate_is_refused(ec_world: World) -> None:
    key = ec_world.key(KeyUsage.SIGNATURE)
    cca = ec_world.brand.cardholder_ca.ca
    mca = ec_world.brand.merchant_ca.ca
    with pytest.raises(ConfigurationError, match="CERTIFICATE_TYPE_MERCHANT_CA"):
        issue_merchant(cca, key.public_key, CertificateUsage.SIGNATURE, MERCHANT)
    with pytest.raises(ConfigurationError, match="CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA"):
        issue_gateway(mca, key.public_key, CertificateUsage.SIGNATURE, "gw")
    with pytest.raises(ConfigurationError, match="CERTIFICATE_TYPE_CARDHOLDER_CA"):
        issue_cardholder(mca, key.public_key, b"\x00" * 32, card_expiry_end("203001"))
    with pytest.raises(ConfigurationError, match="BRAND_ROOT"):
        issue_ca_certificate(mca, key.public_key, roles.MERCHANT_CA, common_name="x")


def test_kem_must_fit_the_key(ec_world: World) -> None:
    key = ec_world.key(KeyUsage.KEY_EXCHANGE)
    pca = ec_world.brand.gateway_ca.ca
    with pytest.raises(ProtocolError) as caught:
        issue_gateway(
            pca, key.public_key, CertificateUsage.KEY_EXCHANGE, "gw", kem=KemAlgorithm.RSA_OAEP_SHA1
        )
    assert caught.value.code == ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED
    with pytest.raises(ConfigurationError, match="no KEM"):
        issue_gateway(
            pca, key.public_key, CertificateUsage.SIGNATURE, "gw", kem=KemAlgorithm.P256_HKDF_SHA256
        )


def test_issuing_ca_checks_its_key(ec_world: World, backend: KeyBackend) -> None:
    other = ec_world.key(KeyUsage.SIGNATURE)
    with pytest.raises(ConfigurationError, match="does not match"):
        IssuingCA(backend, other, ec_world.brand.merchant_ca.ca.der)
    with pytest.raises(ConfigurationError, match="not a setpay CA"):
        IssuingCA(backend, other, ec_world.merchant_sig)


def test_naive_datetimes_refused(ec_world: World, backend: KeyBackend) -> None:
    key = backend.generate("naive-root", KeyUsage.CA_SIGNING, ec_world.profile.ca_key)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        create_brand_root(backend, key, "b", at=datetime(2030, 1, 1))


def test_brand_tree_keys_and_certificates(world: World) -> None:
    brand = world.brand
    backend = world.backend
    assert backend.certificate(brand.root.key) == brand.root.der
    assert brand.root.chain == (brand.root.der,)
    for sub in brand.subordinates:
        assert backend.certificate(sub.ca.key) == sub.ca.der
        assert backend.certificate(sub.key_exchange_key) == sub.key_exchange_der
        assert sub.ca.chain == (sub.ca.der, brand.root.der)
        assert sub.ca.root_der == brand.root.der
        assert sub.ca.key.usage is KeyUsage.CA_SIGNING
        assert sub.key_exchange_key.usage is KeyUsage.KEY_EXCHANGE
        assert sub.ca.key.algorithm is world.profile.ca_key
