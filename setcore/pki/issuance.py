"""Issuing setpay's X.509 certificates: the brand root, the three CAs, and end entities.

Every certificate is signed through the issuing CA's ``KeyBackend`` key (ECDSA P-256 /
SHA-256 or RSA-PSS SHA-256 salt 32), carries a random 159-bit serial, SKI and AKI, a
critical basicConstraints and keyUsage, and setpay's certificateType and brandId
extensions (``setcore.pki.extensions``). A child never outlives its issuer: notAfter is
clipped to the issuer's, and a cardholder certificate also to the card's expiry.

Misuse by the caller (a merchant certificate asked of the Cardholder CA, naive
datetimes, an already expired card) raises ``ConfigurationError``; a public key not on
the allow-list raises ``ProtocolError`` (ALGORITHM_NOT_ALLOWED), since it usually comes
from a certificate request.
"""

from __future__ import annotations

import calendar
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from hsm.base import KemAlgorithm, KeyBackend, KeyHandle, PublicKey
from setcore.encoding import thumbprint
from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.pan import check_expiry
from setcore.pki import extensions, roles
from setcore.pki.backend_key import CERTIFICATE_PSS, BackendRSAKey, backend_private_key
from setcore.pki.certificate import common_name_of
from setcore.pki.extensions import MerchantData
from setcore.pki.roles import CertificateUsage
from setcore.signed import algorithm_for_public_key

# RFC 5280 allows serials of at most 20 octets; 159 random bits stay positive within
# 20 octets and give far more than the 64 bits of entropy CAs are asked for.
SERIAL_BITS = 159
# notBefore is set this far in the past so that a peer whose clock runs a little slow
# still accepts a certificate issued a moment ago.
CLOCK_SKEW = timedelta(minutes=5)
# Lifetimes: the root is an offline, long-lived anchor; CAs are re-keyed every few years;
# end entities yearly (a cardholder certificate is also cut at the card's expiry).
ROOT_LIFETIME = timedelta(days=3650)
CA_LIFETIME = timedelta(days=1825)
END_ENTITY_LIFETIME = timedelta(days=365)
# The brand root sits one CA tier above the end entities (no geopolitical tier).
ROOT_PATH_LENGTH = 1
# X.509's upper bound on a CommonName (ub-common-name).
MAX_COMMON_NAME_CHARS = 64
# Cardholder subject ids are random: the subject must not reveal the PAN (SET-PROTOCOL.md
# section 2.5). 16 bytes make collisions irrelevant.
CARDHOLDER_ID_BYTES = 16


def utc(at: datetime | None) -> datetime:
    """``at`` (timezone-aware) in UTC, or now; naive datetimes are refused as ambiguous."""
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ConfigurationError("datetimes must be timezone-aware")
    return at.astimezone(UTC)


def card_expiry_end(expiry: str) -> datetime:
    """The instant a card expiring ``YYYYMM`` stops being valid: the end of that month, UTC.

    DECODING_FAILURE (``check_expiry``) for an expiry that names no such instant, never a
    ValueError: a CA judges it inside a transaction, where an unexpected exception is a
    bug's traceback and an UNSPECIFIED_FAILURE to the requester, not a refusal.
    """
    check_expiry(expiry)
    year, month = int(expiry[:4]), int(expiry[4:])
    try:
        last_day = calendar.monthrange(year, month)[1]
        return datetime(year, month, last_day, 23, 59, 59, tzinfo=UTC)
    except ValueError as exc:  # a year the calendar cannot name, were the range widened
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "card expiry names no date") from exc


def default_kem(public_key: PublicKey) -> KemAlgorithm:
    """The key transport a key-exchange key of this type uses unless its backend says else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return KemAlgorithm.P256_HKDF_SHA256
    if isinstance(public_key, rsa.RSAPublicKey):
        return KemAlgorithm.RSA_OAEP_SHA256
    raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "key exchange needs EC P-256 or RSA")


def kem_for(handle: KeyHandle) -> KemAlgorithm:
    """The key transport a backend key-exchange key accepts (its own, else the default)."""
    return handle.kem if handle.kem is not None else default_kem(handle.public_key)


def check_kem(public_key: PublicKey, kem: KemAlgorithm) -> None:
    """Raise unless ``kem`` can be used with ``public_key``."""
    algorithm_for_public_key(public_key)  # key size and curve allow-list
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        allowed: tuple[KemAlgorithm, ...] = (KemAlgorithm.P256_HKDF_SHA256,)
    elif isinstance(public_key, rsa.RSAPublicKey):
        allowed = (KemAlgorithm.RSA_OAEP_SHA256, KemAlgorithm.RSA_OAEP_SHA1)
    else:
        allowed = ()
    if kem not in allowed:
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, f"{kem.value} does not fit this key")


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class IssuingCA:
    """A CA that can sign: its certificate, the backend key behind it, its issuers' chain."""

    backend: KeyBackend
    key: KeyHandle
    der: bytes
    #: DER certificates from this CA's issuer up to the brand root (empty for the root).
    issuer_chain: tuple[bytes, ...] = ()
    certificate: x509.Certificate = field(init=False, repr=False)
    certificate_type: int = field(init=False)
    brand_id: str = field(init=False)
    thumbprint: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cert = x509.load_der_x509_certificate(self.der)
        certificate_type = extensions.read_certificate_type(cert)
        brand_id = extensions.read_brand(cert)
        if certificate_type not in roles.CA_TYPES or brand_id is None:
            raise ConfigurationError("not a setpay CA certificate")
        if not _is_ca(cert):
            raise ConfigurationError("certificate is not a CA (basicConstraints)")
        if _spki(cert.public_key()) != _spki(self.key.public_key):
            raise ConfigurationError(f"{self.key!r} does not match the CA certificate")
        object.__setattr__(self, "certificate", cert)
        object.__setattr__(self, "certificate_type", certificate_type)
        object.__setattr__(self, "brand_id", brand_id)
        object.__setattr__(self, "thumbprint", thumbprint(self.der))

    @property
    def chain(self) -> tuple[bytes, ...]:
        """This CA's certificate followed by its issuers' (DER), for bundles and TLS."""
        return (self.der, *self.issuer_chain)

    @property
    def root_der(self) -> bytes:
        """The brand root certificate this CA chains to."""
        return self.chain[-1]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _name(brand_id: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"setpay {brand_id}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def random_serial() -> int:
    """A random positive serial number of at most ``SERIAL_BITS`` bits."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial


def key_usage(
    *, signature: bool = False, encipher: bool = False, agree: bool = False, ca: bool = False
) -> x509.KeyUsage:
    """A keyUsage value; CA keys also sign the CA's own protocol messages (BCI, CertRes)."""
    return x509.KeyUsage(
        digital_signature=signature or ca,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=agree,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def sign_with_backend(
    builder: x509.CertificateBuilder, backend: KeyBackend, key: KeyHandle
) -> x509.Certificate:
    """Sign a certificate builder with a backend key (RSA keys sign PSS)."""
    private = backend_private_key(backend, key)
    if isinstance(private, BackendRSAKey):
        return builder.sign(private, hashes.SHA256(), rsa_padding=CERTIFICATE_PSS)
    return builder.sign(private, hashes.SHA256())


@dataclass(frozen=True)
class _Template:
    subject: x509.Name
    public_key: PublicKey
    certificate_type: int
    usage: x509.KeyUsage
    path_length: int | None  # None: not a CA
    not_before: datetime
    not_after: datetime
    extra: Sequence[x509.ExtensionType] = ()


def _builder(
    template: _Template, issuer: x509.Name, issuer_key: PublicKey, brand_id: str
) -> x509.CertificateBuilder:
    if template.not_after <= template.not_before:
        raise ConfigurationError("validity window is empty (issuer or card already expired?)")
    is_ca = template.path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(issuer)
        .public_key(template.public_key)
        .serial_number(random_serial())
        .not_valid_before(template.not_before)
        .not_valid_after(template.not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=template.path_length), True)
        .add_extension(template.usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(template.public_key), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), False)
        .add_extension(extensions.certificate_type_extension(template.certificate_type), False)
        .add_extension(extensions.brand_extension(brand_id), False)
    )
    for extension in template.extra:
        builder = builder.add_extension(extension, critical=False)
    return builder


def _issue(ca: IssuingCA, template: _Template) -> bytes:
    # A child never outlives its issuer.
    clipped = min(template.not_after, ca.certificate.not_valid_after_utc)
    template = _Template(**{**template.__dict__, "not_after": clipped})
    builder = _builder(template, ca.certificate.subject, ca.key.public_key, ca.brand_id)
    return sign_with_backend(builder, ca.backend, ca.key).public_bytes(serialization.Encoding.DER)


def _window(at: datetime | None, lifetime: timedelta) -> tuple[datetime, datetime]:
    now = utc(at)
    return now - CLOCK_SKEW, now + lifetime


def _require_type(ca: IssuingCA, certificate_type: int) -> None:
    if ca.certificate_type != certificate_type:
        raise ConfigurationError(
            f"a {roles.type_name(ca.certificate_type)} cannot issue this certificate "
            f"(needs {roles.type_name(certificate_type)})"
        )


def create_brand_root(
    backend: KeyBackend,
    key: KeyHandle,
    brand_id: str,
    *,
    common_name: str | None = None,
    at: datetime | None = None,
    lifetime: timedelta = ROOT_LIFETIME,
) -> IssuingCA:
    """The self-signed brand root, which is also the brand CA that signs BCIs."""
    algorithm_for_public_key(key.public_key)
    not_before, not_after = _window(at, lifetime)
    subject = _name(brand_id, common_name or f"{brand_id} brand root")
    template = _Template(
        subject=subject,
        public_key=key.public_key,
        certificate_type=roles.BRAND_ROOT,
        usage=key_usage(ca=True),
        path_length=ROOT_PATH_LENGTH,
        not_before=not_before,
        not_after=not_after,
    )
    builder = _builder(template, subject, key.public_key, brand_id)
    cert = sign_with_backend(builder, backend, key)
    return IssuingCA(backend, key, cert.public_bytes(serialization.Encoding.DER))


def issue_ca_certificate(
    root: IssuingCA,
    public_key: PublicKey,
    certificate_type: int,
    *,
    common_name: str,
    at: datetime | None = None,
    lifetime: timedelta = CA_LIFETIME,
) -> bytes:
    """A Cardholder, Merchant or Payment Gateway CA certificate, signed by the brand root."""
    _require_type(root, roles.BRAND_ROOT)
    if certificate_type not in roles.CA_TYPES - {roles.BRAND_ROOT}:
        raise ConfigurationError(f"{roles.type_name(certificate_type)} is not a sub-CA type")
    algorithm_for_public_key(public_key)
    not_before, not_after = _window(at, lifetime)
    template = _Template(
        subject=_name(root.brand_id, common_name),
        public_key=public_key,
        certificate_type=certificate_type,
        usage=key_usage(ca=True),
        path_length=0,
        not_before=not_before,
        not_after=not_after,
    )
    return _issue(root, template)


def _key_exchange_usage(public_key: PublicKey, kem: KemAlgorithm) -> x509.KeyUsage:
    check_kem(public_key, kem)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return key_usage(agree=True)
    return key_usage(encipher=True)


def _end_entity(
    ca: IssuingCA,
    public_key: PublicKey,
    certificate_type: int,
    usage: CertificateUsage,
    common_name: str,
    kem: KemAlgorithm | None,
    window: tuple[datetime, datetime],
    extra: Sequence[x509.ExtensionType] = (),
) -> bytes:
    algorithm_for_public_key(public_key)
    if usage is CertificateUsage.KEY_EXCHANGE:
        chosen = kem if kem is not None else default_kem(public_key)
        ku = _key_exchange_usage(public_key, chosen)
        extra = (*extra, extensions.kem_extension(chosen))
    else:
        if kem is not None:
            raise ConfigurationError("a signature certificate carries no KEM algorithm")
        ku = key_usage(signature=True)
    template = _Template(
        subject=_name(ca.brand_id, common_name),
        public_key=public_key,
        certificate_type=certificate_type,
        usage=ku,
        path_length=None,
        not_before=window[0],
        not_after=window[1],
        extra=extra,
    )
    return _issue(ca, template)


def issue_ca_key_exchange(
    ca: IssuingCA,
    public_key: PublicKey,
    *,
    kem: KemAlgorithm | None = None,
    at: datetime | None = None,
    lifetime: timedelta = CA_LIFETIME,
) -> bytes:
    """The CA's own key-exchange certificate (registration data is sealed to it); by
    default it lasts as long as the CA's certificate."""
    # Not END_ENTITY_LIFETIME: nothing renews it on its own, and a CA whose key-exchange
    # certificate ended a year after the bank was made registered nobody. Its key is the
    # CA's own, kept in custody as the CA's signing key is.
    if ca.certificate_type == roles.BRAND_ROOT:
        raise ConfigurationError("the brand root receives no registration data")
    suffix = " key exchange"
    ca_name = common_name_of(ca.certificate)[: MAX_COMMON_NAME_CHARS - len(suffix)]
    return _end_entity(
        ca,
        public_key,
        ca.certificate_type,
        CertificateUsage.KEY_EXCHANGE,
        ca_name + suffix,
        kem,
        _window(at, lifetime),
    )


def issue_cardholder(
    ca: IssuingCA,
    public_key: PublicKey,
    blinded_account: bytes,
    card_expires_at: datetime,
    *,
    at: datetime | None = None,
    lifetime: timedelta = END_ENTITY_LIFETIME,
) -> bytes:
    """A cardholder signature certificate: random subject id, blinded account, <= card expiry."""
    _require_type(ca, roles.CARDHOLDER_CA)
    not_before, not_after = _window(at, lifetime)
    not_after = min(not_after, utc(card_expires_at))
    return _end_entity(
        ca,
        public_key,
        roles.CARDHOLDER,
        CertificateUsage.SIGNATURE,
        secrets.token_hex(CARDHOLDER_ID_BYTES),
        None,
        (not_before, not_after),
        (extensions.blinded_account_extension(blinded_account),),
    )


def issue_merchant(
    ca: IssuingCA,
    public_key: PublicKey,
    usage: CertificateUsage,
    merchant: MerchantData,
    *,
    kem: KemAlgorithm | None = None,
    at: datetime | None = None,
    lifetime: timedelta = END_ENTITY_LIFETIME,
) -> bytes:
    """A merchant signature or key-exchange certificate carrying merchantData."""
    _require_type(ca, roles.MERCHANT_CA)
    return _end_entity(
        ca,
        public_key,
        roles.MERCHANT,
        CertificateUsage(usage),
        merchant.merchant_id,
        kem,
        _window(at, lifetime),
        (extensions.merchant_data_extension(merchant),),
    )


def issue_gateway(
    ca: IssuingCA,
    public_key: PublicKey,
    usage: CertificateUsage,
    common_name: str,
    *,
    kem: KemAlgorithm | None = None,
    at: datetime | None = None,
    lifetime: timedelta = END_ENTITY_LIFETIME,
) -> bytes:
    """A payment gateway signature or key-exchange certificate."""
    _require_type(ca, roles.PAYMENT_GATEWAY_CA)
    return _end_entity(
        ca,
        public_key,
        roles.PAYMENT_GATEWAY,
        CertificateUsage(usage),
        common_name,
        kem,
        _window(at, lifetime),
    )
