"""Hostile certificate bytes from a peer's bundle: refused with a SET code, never a foreign error.

Each certificate here is a real one altered in a few bytes, the way a peer could send it;
``TrustStore.resolve`` is what a gateway or merchant calls on a bundle it received.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode
from setcore.pki import extensions, roles
from setcore.pki.certificate import check_signature_algorithm, load_certificate
from setcore.pki.crl import load_crl
from setcore.pki.issuance import key_usage, random_serial
from setpay.v1 import crypto_pb2

from .conftest import MERCHANT, SIG, World, mca_bundle, refused

# DER of the version field of a v3 certificate: [0] EXPLICIT INTEGER 2.
_VERSION_V3 = bytes.fromhex("a003020102")
# DER of the OID of SHA-256 (2.16.840.1.101.3.4.2.1) and of an unassigned sibling (.99).
_SHA256_OID = bytes.fromhex("0609608648016503040201")
_UNKNOWN_HASH_OID = bytes.fromhex("0609608648016503040263")


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        encoded, rest = [arc & 0x7F], arc >> 7
        while rest:
            encoded.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(encoded)
    return bytes([0x06, len(body)]) + bytes(body)


def _resolve(world: World, der: bytes) -> object:
    bundle = crypto_pb2.CertBundle(certificates=[der, *mca_bundle(world)])
    return world.store().resolve(thumbprint(der), bundle, roles.MERCHANT, SIG)


def test_a_version_x509_does_not_define_is_an_invalid_certificate(ec_world: World) -> None:
    der = ec_world.merchant_sig
    at = der.index(_VERSION_V3)
    bad = der[: at + 4] + b"\x03" + der[at + 5 :]  # version 4, which X.509 never defined
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_certificate, bad)
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, _resolve, ec_world, bad)


def test_an_extension_present_twice_is_an_invalid_certificate(ec_world: World) -> None:
    der = ec_world.merchant_sig
    brand, kind = (
        _oid_der(extensions.BRAND_ID_OID),
        _oid_der(extensions.CERTIFICATE_TYPE_OID),
    )
    assert der.count(brand) == 1 and len(brand) == len(kind)
    twice = der.replace(brand, kind)  # two certificate-type extensions, no brand
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_certificate, twice)
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, _resolve, ec_world, twice)


def test_a_general_name_the_library_does_not_model_is_an_invalid_certificate(
    ec_world: World,
) -> None:
    # A subjectAltName holding an x400Address: cryptography raises its own
    # UnsupportedGeneralNameType, no ValueError, when the extensions are read.
    now = datetime.now(UTC)
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x400")])
    x400 = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3004a3020500")
    )
    der = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x400, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_certificate, der)
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, _resolve, ec_world, der)


def test_a_crl_naming_its_issuer_by_a_name_the_library_does_not_model_is_invalid() -> None:
    # The CRL's issuerAltName, an x400Address: read when the loader touches its extensions.
    now = datetime.now(UTC)
    key = rsa.generate_private_key(65537, 2048)
    x400 = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.ISSUER_ALTERNATIVE_NAME, bytes.fromhex("3004a3020500")
    )
    der = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x400")]))
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_extension(x400, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, load_crl, der)


def test_rsa_pss_with_an_unknown_hash_is_an_algorithm_not_allowed(ec_world: World) -> None:
    # Signed as setpay CAs sign (RSA-PSS, SHA-256, salt 32), then every SHA-256 OID in the
    # algorithm parameters renamed to one no library knows.
    now = datetime.now(UTC)
    issuer = ec_world.brand.merchant_ca.ca.certificate.subject
    key = rsa.generate_private_key(65537, 2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "odd")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(key_usage(signature=True), True)
        .add_extension(extensions.certificate_type_extension(roles.MERCHANT), False)
        .add_extension(extensions.brand_extension(ec_world.root.brand_id), False)
        .add_extension(extensions.merchant_data_extension(MERCHANT), False)
        .sign(
            key,
            hashes.SHA256(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        )
    )
    der = cert.public_bytes(Encoding.DER)
    check_signature_algorithm(load_certificate(der))  # the unaltered one is allowed
    unknown = der.replace(_SHA256_OID, _UNKNOWN_HASH_OID)
    assert unknown != der
    refused(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
        check_signature_algorithm,
        load_certificate(unknown),
    )
    refused(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, _resolve, ec_world, unknown)
