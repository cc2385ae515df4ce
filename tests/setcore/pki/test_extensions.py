"""setpay's private extensions: encoding, decoding, and refusal of malformed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm.base import KemAlgorithm
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError
from setcore.pki import der, extensions, roles
from setcore.pki.extensions import MerchantData


def _cert_with(*values: x509.ExtensionType) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    for value in values:
        builder = builder.add_extension(value, critical=False)
    return builder.sign(key, hashes.SHA256())


def test_arc_is_setpay_uuid_arc_not_set() -> None:
    for oid in extensions.SETPAY_OIDS:
        assert oid.dotted_string.startswith("2.25.88477392499864150230206484485904515263.")
        assert not oid.dotted_string.startswith("2.23.42")


def test_round_trip_all_extensions() -> None:
    data = MerchantData("m-1", "Shop \u00e9", pan_allowed=True)
    cert = _cert_with(
        extensions.certificate_type_extension(roles.MERCHANT),
        extensions.blinded_account_extension(b"\x07" * 32),
        extensions.merchant_data_extension(data),
        extensions.kem_extension(KemAlgorithm.RSA_OAEP_SHA1),
        extensions.brand_extension("brand"),
    )
    assert extensions.read_certificate_type(cert) == roles.MERCHANT
    assert extensions.read_blinded_account(cert) == b"\x07" * 32
    assert extensions.read_merchant_data(cert) == data
    assert extensions.read_kem(cert) is KemAlgorithm.RSA_OAEP_SHA1
    assert extensions.read_brand(cert) == "brand"
    assert all(not ext.critical for ext in cert.extensions)


def test_absent_extensions_read_as_none() -> None:
    cert = _cert_with()
    assert extensions.read_certificate_type(cert) is None
    assert extensions.read_blinded_account(cert) is None
    assert extensions.read_merchant_data(cert) is None
    assert extensions.read_kem(cert) is None
    assert extensions.read_brand(cert) is None


@pytest.mark.parametrize(
    ("oid", "value", "reader"),
    [
        (extensions.CERTIFICATE_TYPE_OID, der.enumerated(99), extensions.read_certificate_type),
        (extensions.CERTIFICATE_TYPE_OID, der.utf8_string("x"), extensions.read_certificate_type),
        (
            extensions.BLINDED_ACCOUNT_OID,
            der.encode(der.OCTET_STRING, b"\x00" * 31),
            extensions.read_blinded_account,
        ),
        (
            extensions.MERCHANT_DATA_OID,
            der.sequence(der.utf8_string("id"), der.boolean(True)),
            extensions.read_merchant_data,
        ),
        (
            extensions.MERCHANT_DATA_OID,
            der.sequence(der.utf8_string(""), der.utf8_string("n"), der.boolean(True)),
            extensions.read_merchant_data,
        ),
        (extensions.KEM_ALGORITHM_OID, der.utf8_string("rsa-pkcs1"), extensions.read_kem),
        (extensions.BRAND_ID_OID, der.encode(der.UTF8_STRING, b"\xff"), extensions.read_brand),
    ],
)
def test_malformed_extension_is_invalid_certificate(
    oid: x509.ObjectIdentifier, value: bytes, reader: object
) -> None:
    cert = _cert_with(x509.UnrecognizedExtension(oid, value))
    with pytest.raises(ProtocolError) as caught:
        reader(cert)  # type: ignore[operator]
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE


def test_builders_refuse_bad_values() -> None:
    with pytest.raises(ConfigurationError):
        extensions.certificate_type_extension(0)
    with pytest.raises(ConfigurationError):
        extensions.blinded_account_extension(b"short")
    with pytest.raises(ConfigurationError):
        extensions.brand_extension("")
    with pytest.raises(ConfigurationError):
        MerchantData("x" * 65, "name", pan_allowed=False)
