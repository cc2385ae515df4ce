"""Reading X.509 certificates safely: parsing, allowed keys and signature algorithms.

Foreign errors from ``cryptography`` stop here and become INVALID_CERTIFICATE (or
ALGORITHM_NOT_ALLOWED for a key or signature algorithm off the allow-list).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from hsm.base import PublicKey
from setcore.errors import ErrorCode, fail
from setcore.pki import der
from setcore.signed import algorithm_for_public_key

# A certificate bigger than this is not one setpay issued (ours are well under 2 KB even
# with RSA keys); refusing early bounds the parser's work on hostile input.
MAX_CERTIFICATE_BYTES = 16 * 1024


def load_certificate(der: bytes) -> x509.Certificate:
    """Parse a DER certificate; anything malformed is INVALID_CERTIFICATE."""
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, f"certificate of {len(der)} bytes")
    try:
        cert = x509.load_der_x509_certificate(der)
        # Extensions and names are parsed lazily; touch them now so that a malformed one
        # fails here, not as a ValueError wherever a path builder compares names.
        _ = cert.extensions, cert.subject, cert.issuer
        version = cert.version
    except (
        ValueError,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        # cryptography reports a version number X.509 does not define, an extension
        # present twice (RFC 5280 4.2) and a general name it does not model (x400Address,
        # EDIPartyName) with their own exception types, not ValueError.
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "malformed certificate") from exc
    if version is not x509.Version.v3:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "not an X.509 v3 certificate")
    return cert


def public_key_of(cert: x509.Certificate) -> PublicKey:
    """The certificate's public key, if it is a type on setpay's allow-list."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "unreadable public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "public key type not allowed")
    algorithm_for_public_key(key)
    return key


def check_signature_algorithm(cert: x509.Certificate) -> None:
    """Raise unless the certificate is signed ECDSA-SHA-256 or RSA-PSS-SHA-256 (salt 32).

    These are the only two ways setpay CAs sign (``backend_key``); anything else did not
    come from a setpay CA.
    """
    oid = cert.signature_algorithm_oid
    if oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            params = cert.signature_algorithm_parameters
            hash_algorithm = cert.signature_hash_algorithm
        except (UnsupportedAlgorithm, ValueError) as exc:
            # PSS parameters naming a hash or mask function cryptography does not know.
            raise fail(
                ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "RSA-PSS with unknown parameters"
            ) from exc
        if (
            isinstance(params, padding.PSS)
            and isinstance(hash_algorithm, hashes.SHA256)
            and _outer_signature_algorithm(cert) == _PSS_SHA256_SALT32
        ):
            return
    raise fail(
        ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED,
        f"certificate signature algorithm {oid.dotted_string} not allowed",
    )


# DER of the only RSA-PSS AlgorithmIdentifier setpay accepts: rsassaPss with hash SHA-256,
# MGF1-SHA-256, salt 32 (trailer field default). Compared as bytes because cryptography
# does not expose the salt length of a parsed certificate.
_PSS_SHA256_SALT32 = bytes.fromhex(
    "304106092a864886f70d01010a"
    "3034a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500"
    "a203020120"
)


def _outer_signature_algorithm(cert: x509.Certificate) -> bytes:
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    encoded = cert.public_bytes(serialization.Encoding.DER)
    try:
        _, body, _ = der.read(encoded, max_bytes=MAX_CERTIFICATE_BYTES)
        _, _, after_tbs = der.read(body, max_bytes=MAX_CERTIFICATE_BYTES)
        _, _, after_algorithm = der.read(body, after_tbs, max_bytes=MAX_CERTIFICATE_BYTES)
    except der.DerError as exc:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "malformed certificate") from exc
    return body[after_tbs:after_algorithm]


def common_name_of(cert: x509.Certificate) -> str:
    """The subject CommonName of ``cert`` (empty when it has none)."""
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else ""


def outside_window(what: str, not_before: datetime, not_after: datetime, at: datetime) -> str:
    """Why ``what`` (a certificate or a BCI, named) is not valid at ``at``: not yet, with
    when it begins and a word on the clock (a machine running behind its CA's), or no
    longer, with when it ended. Only the object's own dates are named, never this
    machine's time."""
    if at < not_before:
        return (
            f"{what} is not valid before {not_before:%Y-%m-%d %H:%M:%S} UTC: if it was issued"
            " just now, this machine's clock is behind its issuer's"
        )
    return f"{what} ended at {not_after:%Y-%m-%d %H:%M:%S} UTC"
