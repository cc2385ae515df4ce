"""Certificate revocation lists: issuing them through the CA's backend key, reading them.

Each CA publishes its own CRL with a cRLNumber that grows with every issue; the brand
root publishes the one that covers the CA certificates. Which CRL is current is not
decided here but by the brand's signed BrandCRLIdentifier (``setcore.pki.bci``).

A CRL's ECDSA signature is accepted with either s, as a certificate's is
(``setcore.pki.chain``), but a CRL's twin is never used: the BCI names each CRL by its
thumbprint, and a twin, another thumbprint, is a CRL the BCI lists that is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.pki.backend_key import CERTIFICATE_PSS, BackendRSAKey, backend_private_key
from setcore.pki.issuance import IssuingCA, utc

# A CRL names its next update a week ahead: the BCI, re-signed more often, is what tells
# a verifier which CRL is current; nextUpdate is the outer bound if publication stalls.
CRL_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class RevokedCertificate:
    """One revoked certificate: its serial number and when it was revoked."""

    serial_number: int
    revoked_at: datetime


def issue_crl(
    ca: IssuingCA,
    revoked: Iterable[RevokedCertificate],
    crl_number: int,
    *,
    at: datetime | None = None,
    lifetime: timedelta = CRL_LIFETIME,
) -> bytes:
    """A DER CRL of ``ca`` listing ``revoked``, numbered ``crl_number``, signed in the backend."""
    if crl_number < 0:
        raise ConfigurationError("CRL numbers are non-negative")
    now = utc(at)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + lifetime)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key), False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(utc(entry.revoked_at))
            .build()
        )
    private = backend_private_key(ca.backend, ca.key)
    if isinstance(private, BackendRSAKey):
        crl = builder.sign(private, hashes.SHA256(), rsa_padding=CERTIFICATE_PSS)
    else:
        crl = builder.sign(private, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def load_crl(der: bytes) -> x509.CertificateRevocationList:
    """Parse a DER CRL; malformed input is INVALID_CERTIFICATE.

    setpay processes no critical CRL or CRL entry extension: a CRL carrying one (a delta
    CRL, an indirect CRL's certificateIssuer, anything unknown) must not be used to
    decide revocation (RFC 5280 5.2, 5.3), so it is refused (UNRECOGNIZED_EXTENSION)
    rather than read as a complete list of this CA's revocations.
    """
    try:
        crl = x509.load_der_x509_crl(der)
        # Extensions are parsed lazily; touch them (and every entry's) now so that a
        # malformed one fails here, not while a chain is being checked.
        critical = [e.oid for e in crl.extensions if e.critical]
        critical += [e.oid for entry in crl for e in entry.extensions if e.critical]
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # An entry's certificateIssuer holds general names: one cryptography does not
        # model raises its own type, as a certificate's does (``certificate``).
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "malformed CRL") from exc
    if critical:
        raise fail(
            ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION,
            f"CRL with critical extension {critical[0].dotted_string}",
        )
    return crl


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's cRLNumber; a CRL without one is INVALID_CERTIFICATE."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CRL has no cRLNumber") from exc


def verify_crl_issuer(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    """Raise unless ``issuer`` named and signed ``crl``."""
    if crl.issuer != issuer.subject:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CRL issuer name does not match")
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "CRL signature unusable") from exc
    if not valid:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "CRL signature does not verify")
