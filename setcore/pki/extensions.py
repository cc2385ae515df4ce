"""setpay's own X.509 extensions, under a private arc derived from a UUID (X.667).

    2.25.88477392499864150230206484485904515263      setpay's arc (never SET's 2.23.42)
      .1  certificateType   ENUMERATED  (the setpay.v1.CertificateType number)
      .2  blindedAccount    OCTET STRING (32 bytes: keyed hash of the card account)
      .3  merchantData      SEQUENCE { merchantID UTF8String, merchantName UTF8String,
                                       panAllowed BOOLEAN }
      .4  kemAlgorithm      UTF8String  ("p256-hkdf-sha256" | "rsa-oaep-sha256" |
                                         "rsa-oaep-sha1"), on key-exchange certificates
      .5  brandId           UTF8String

SET marked its certificateType extension critical. setpay marks all of its extensions
NON-critical on purpose: ``openssl verify`` (and any other standard verifier, including
the TLS stacks that see these CAs) refuses a certificate carrying a critical extension it
does not know, and the chains must stay checkable by standard tools. Nothing is lost:
setpay's own validator (``setcore.pki.chain``) requires and enforces every one of these
extensions whatever its criticality flag says, so a setpay peer never ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from hsm.base import KemAlgorithm
from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.pki import der
from setpay.v1 import registration_pb2

SETPAY_ARC = "2.25.88477392499864150230206484485904515263"

CERTIFICATE_TYPE_OID = x509.ObjectIdentifier(f"{SETPAY_ARC}.1")
BLINDED_ACCOUNT_OID = x509.ObjectIdentifier(f"{SETPAY_ARC}.2")
MERCHANT_DATA_OID = x509.ObjectIdentifier(f"{SETPAY_ARC}.3")
KEM_ALGORITHM_OID = x509.ObjectIdentifier(f"{SETPAY_ARC}.4")
BRAND_ID_OID = x509.ObjectIdentifier(f"{SETPAY_ARC}.5")

SETPAY_OIDS = frozenset(
    {CERTIFICATE_TYPE_OID, BLINDED_ACCOUNT_OID, MERCHANT_DATA_OID, KEM_ALGORITHM_OID, BRAND_ID_OID}
)

# The blinded account id is an HMAC-SHA-256 output (setcore.pan.blinded_account).
BLINDED_ACCOUNT_BYTES = 32
# The merchant id is also the merchant certificate's CommonName, whose X.509 upper
# bound (ub-common-name) is 64 characters.
MAX_MERCHANT_ID_CHARS = 64
# Names are for display; the bound keeps certificates small and stops a registration form
# from smuggling kilobytes into a certificate.
MAX_MERCHANT_NAME_CHARS = 128
# Brand ids are short names ("setpay", "visa"); same reasoning as above.
MAX_BRAND_ID_CHARS = 64

KNOWN_CERTIFICATE_TYPES = frozenset(
    value
    for value in registration_pb2.CertificateType.values()
    if value != registration_pb2.CERTIFICATE_TYPE_UNSPECIFIED
)


@dataclass(frozen=True)
class MerchantData:
    """What a merchant certificate says about the merchant (SET's merchantData)."""

    merchant_id: str
    merchant_name: str
    # Whether the acquirer lets this merchant receive the PAN (SET's EncBX/PANToken).
    pan_allowed: bool

    def __post_init__(self) -> None:
        if not 0 < len(self.merchant_id) <= MAX_MERCHANT_ID_CHARS:
            raise ConfigurationError(f"merchant id must be 1..{MAX_MERCHANT_ID_CHARS} characters")
        if not 0 < len(self.merchant_name) <= MAX_MERCHANT_NAME_CHARS:
            raise ConfigurationError(
                f"merchant name must be 1..{MAX_MERCHANT_NAME_CHARS} characters"
            )


def _extension(oid: x509.ObjectIdentifier, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, value)


def certificate_type_extension(certificate_type: int) -> x509.UnrecognizedExtension:
    """The certificateType extension for a ``setpay.v1.CertificateType`` value."""
    if certificate_type not in KNOWN_CERTIFICATE_TYPES:
        raise ConfigurationError(f"unknown certificate type {certificate_type}")
    return _extension(CERTIFICATE_TYPE_OID, der.enumerated(certificate_type))


def blinded_account_extension(blinded_account: bytes) -> x509.UnrecognizedExtension:
    """The blindedAccount extension carrying the 32-byte blinded account id."""
    if len(blinded_account) != BLINDED_ACCOUNT_BYTES:
        raise ConfigurationError(f"blinded account id must be {BLINDED_ACCOUNT_BYTES} bytes")
    return _extension(BLINDED_ACCOUNT_OID, der.encode(der.OCTET_STRING, blinded_account))


def merchant_data_extension(data: MerchantData) -> x509.UnrecognizedExtension:
    """The merchantData extension."""
    value = der.sequence(
        der.utf8_string(data.merchant_id),
        der.utf8_string(data.merchant_name),
        der.boolean(data.pan_allowed),
    )
    return _extension(MERCHANT_DATA_OID, value)


def kem_extension(kem: KemAlgorithm) -> x509.UnrecognizedExtension:
    """The kemAlgorithm extension of a key-exchange certificate."""
    return _extension(KEM_ALGORITHM_OID, der.utf8_string(kem.value))


def brand_extension(brand_id: str) -> x509.UnrecognizedExtension:
    """The brandId extension."""
    if not brand_id or len(brand_id) > MAX_BRAND_ID_CHARS:
        raise ConfigurationError(f"brand id must be 1..{MAX_BRAND_ID_CHARS} chars")
    return _extension(BRAND_ID_OID, der.utf8_string(brand_id))


def _raw(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, f"extension {oid.dotted_string}")
    return value.value


def _invalid(what: str, exc: Exception) -> Exception:
    return fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, f"malformed {what} extension: {exc}")


def read_certificate_type(cert: x509.Certificate) -> int | None:
    """The certificateType value, or None when the extension is absent."""
    raw = _raw(cert, CERTIFICATE_TYPE_OID)
    if raw is None:
        return None
    try:
        value = der.parse_enumerated(der.read_only(raw, der.ENUMERATED))
    except der.DerError as exc:
        raise _invalid("certificateType", exc) from exc
    if value not in KNOWN_CERTIFICATE_TYPES:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, f"unknown certificate type {value}")
    return value


def read_blinded_account(cert: x509.Certificate) -> bytes | None:
    """The 32-byte blinded account id, or None when absent."""
    raw = _raw(cert, BLINDED_ACCOUNT_OID)
    if raw is None:
        return None
    try:
        value = der.read_only(raw, der.OCTET_STRING)
    except der.DerError as exc:
        raise _invalid("blindedAccount", exc) from exc
    if len(value) != BLINDED_ACCOUNT_BYTES:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "blinded account id is not 32 bytes")
    return value


def read_merchant_data(cert: x509.Certificate) -> MerchantData | None:
    """The merchantData, or None when absent."""
    raw = _raw(cert, MERCHANT_DATA_OID)
    if raw is None:
        return None
    try:
        items = der.read_sequence(raw)
        tags = [tag for tag, _ in items]
        if tags != [der.UTF8_STRING, der.UTF8_STRING, der.BOOLEAN]:
            raise der.DerError("merchantData must be {UTF8String, UTF8String, BOOLEAN}")
        return MerchantData(
            merchant_id=der.parse_utf8(items[0][1]),
            merchant_name=der.parse_utf8(items[1][1]),
            pan_allowed=der.parse_boolean(items[2][1]),
        )
    except (ValueError, ConfigurationError) as exc:
        raise _invalid("merchantData", exc) from exc


def read_kem(cert: x509.Certificate) -> KemAlgorithm | None:
    """The kemAlgorithm of a key-exchange certificate, or None when absent."""
    raw = _raw(cert, KEM_ALGORITHM_OID)
    if raw is None:
        return None
    try:
        return KemAlgorithm(der.parse_utf8(der.read_only(raw, der.UTF8_STRING)))
    except ValueError as exc:
        raise _invalid("kemAlgorithm", exc) from exc


def read_brand(cert: x509.Certificate) -> str | None:
    """The brandId, or None when absent."""
    raw = _raw(cert, BRAND_ID_OID)
    if raw is None:
        return None
    try:
        return der.parse_utf8(der.read_only(raw, der.UTF8_STRING))
    except der.DerError as exc:
        raise _invalid("brandId", exc) from exc
