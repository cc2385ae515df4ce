"""The BrandCRLIdentifier (BCI): the brand root's signed list of every CA's current CRL.

Issuing: ``issue_brand_crl_identifier`` signs ``Signed(BrandCRLIdentifierTBS)`` with the
brand root key through ``setcore.signed.sign``. Receiving: ``open_brand_crl_identifier``
verifies the signature against the pinned root, the brand and the validity window, and
binds every listed CRL (issuer thumbprint, cRLNumber, CRL thumbprint) to the CRL bytes
supplied, giving a ``RevocationSnapshot`` that chain validation consults.

A CRL's own signature is checked against its issuing CA as soon as that CA's
certificate is at hand: at once for the root and for CA certificates already known,
otherwise the first time a chain through that CA is validated.

A CA certificate's twin (its ECDSA signature's (r, n - s), which anyone can make:
``setcore.pki.chain``) has another thumbprint than the one the BCI names, yet is the same
certificate. ``RevocationSnapshot.status_for`` finds it the CRL the BCI lists for the
certificate: taken for a CA the BCI omits, the twin would have its link judged without
revocation where that is not required, and a certificate the CA revoked accepted. Path
validation refuses the twin's path after that CRL has said whether the certificate below
is revoked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from hsm.base import PublicKey
from hsm.policy import P256_ORDER
from setcore.encoding import content_type_of, parse_strict, thumbprint
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError, fail
from setcore.pki import der
from setcore.pki.certificate import MAX_CERTIFICATE_BYTES, outside_window, public_key_of
from setcore.pki.crl import crl_number, load_crl, verify_crl_issuer
from setcore.pki.issuance import CLOCK_SKEW, IssuingCA, utc
from setcore.signed import open_signed, parse_signed, sign
from setpay.v1 import crypto_pb2, registration_pb2

BCI_CONTENT_TYPE = content_type_of(registration_pb2.BrandCRLIdentifierTBS)
# The BCI is re-signed daily so that a revocation reaches every verifier within a day
# even if a CRL's own nextUpdate is further away.
BCI_LIFETIME = timedelta(days=1)
# A brand has a handful of CAs; a BCI listing (or a peer sending) more CRLs than this is
# malformed or hostile.
MAX_BCI_CRLS = 64
_BIT_STRING = 0x03


class RevocationUnavailable(ProtocolError):
    """Revocation status cannot be established: no BCI, a stale one, or a CA it omits.

    Callers can react by fetching the brand's current BCI and CRLs and retrying.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, reason)


def _ms(at: datetime) -> int:
    return int(utc(at).timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def issue_brand_crl_identifier(
    root: IssuingCA,
    sequence_num: int,
    crls: Sequence[tuple[bytes, bytes]],
    *,
    at: datetime | None = None,
    lifetime: timedelta = BCI_LIFETIME,
) -> bytes:
    """Serialized ``Signed(BrandCRLIdentifierTBS)`` over ``(issuer certificate, CRL)`` pairs."""
    if root.certificate_type != registration_pb2.CERTIFICATE_TYPE_BRAND_ROOT:
        raise ConfigurationError("only the brand root signs the BrandCRLIdentifier")
    if len(crls) > MAX_BCI_CRLS:
        raise ConfigurationError(f"a BCI lists at most {MAX_BCI_CRLS} CRLs")
    now = utc(at)
    tbs = registration_pb2.BrandCRLIdentifierTBS(
        content_type=BCI_CONTENT_TYPE,
        brand_id=root.brand_id,
        sequence_num=sequence_num,
        # Backdated like a certificate's notBefore, so that a verifier whose clock runs a
        # little behind the brand's installs a BCI fetched the moment it is published.
        not_before_unix_ms=_ms(now - CLOCK_SKEW),
        not_after_unix_ms=_ms(now + lifetime),
    )
    for issuer_der, crl_der in crls:
        crl = load_crl(crl_der)
        # Catch a CRL paired with the wrong CA here rather than at every verifier.
        verify_crl_issuer(crl, x509.load_der_x509_certificate(issuer_der))
        tbs.crls.append(
            registration_pb2.CRLIdentifier(
                issuer_thumb=thumbprint(issuer_der),
                crl_number=crl_number(crl),
                crl_thumb=thumbprint(crl_der),
            )
        )
    signed = sign(
        root.backend, root.key, root.thumbprint, BCI_CONTENT_TYPE, tbs.SerializeToString()
    )
    return signed.SerializeToString()


@dataclass(frozen=True)
class CrlStatus:
    """One CA's current CRL, as the BCI names it."""

    issuer_thumb: bytes
    crl_number: int
    crl_thumb: bytes
    crl: x509.CertificateRevocationList = field(repr=False)
    revoked_serials: frozenset[int] = field(repr=False)
    next_update: datetime | None


@dataclass(frozen=True)
class RevocationSnapshot:
    """A verified BCI with the CRLs it lists, keyed by issuing CA certificate thumbprint."""

    bci_thumb: bytes
    brand_id: str
    sequence_num: int
    not_before: datetime
    not_after: datetime
    by_issuer: Mapping[bytes, CrlStatus]
    # CRLs whose signature has been checked against their issuer (issuer thumbprints).
    _checked: set[bytes] = field(default_factory=set, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def status_for(self, issuer: x509.Certificate, issuer_thumb: bytes) -> CrlStatus:
        """The CRL of the CA ``issuer``, its signature checked; raises if the BCI omits it.

        ``issuer`` may be the twin of the CA certificate the BCI names: the twin's twin is
        that certificate, so the twin gets its CRL, whose ``issuer_thumb`` then differs
        from ``issuer_thumb`` (see the module docstring). Only that exact certificate
        counts: a look-alike (same name and key, another serial or validity) is a CA
        certificate of its own, and one the BCI omits.
        """
        status = self.by_issuer.get(issuer_thumb)
        if status is None:
            twin_thumb = _twin_thumbprint(issuer)
            status = None if twin_thumb is None else self.by_issuer.get(twin_thumb)
        if status is None:
            raise RevocationUnavailable("the BrandCRLIdentifier lists no CRL for this CA")
        # Checked against the certificate at hand, which for a twin has the same name and
        # key as the one the BCI names: the same CRL verifies under both.
        if issuer_thumb not in self._checked:
            verify_crl_issuer(status.crl, issuer)
            with self._lock:
                self._checked.add(issuer_thumb)
        return status

    def covers(self, at: datetime) -> bool:
        """Whether this BCI can tell revocation status at ``at``: inside its window, or
        before it (a BCI issued since lists every revocation up to its issue, so a past
        instant, such as a decision's, is judged with it even after a newer BCI)."""
        return at <= self.not_after


def _twin_thumbprint(cert: x509.Certificate) -> bytes | None:
    """The thumbprint of ``cert`` with (r, n - s) for its ECDSA P-256 signature, which
    verifies as ``cert`` does; None for a certificate that has no twin (RSA-PSS: only
    the key's holder signs anew) or whose signature no verifier takes anyway.

    DER is canonical: the tbsCertificate and signatureAlgorithm are kept byte for byte,
    so the twin of a certificate's twin is that certificate, its thumbprint the one the
    BCI names."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return None
    try:
        r, s = decode_dss_signature(cert.signature)
    except ValueError:
        return None
    if not 0 < s < P256_ORDER:
        return None
    encoded = cert.public_bytes(Encoding.DER)
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    try:
        _, body, _ = der.read(encoded, max_bytes=MAX_CERTIFICATE_BYTES)
        _, _, after_tbs = der.read(body, max_bytes=MAX_CERTIFICATE_BYTES)
        _, _, after_algorithm = der.read(body, after_tbs, max_bytes=MAX_CERTIFICATE_BYTES)
    except der.DerError:
        return None
    # BIT STRING: no unused bits, then the DER ECDSA-Sig-Value.
    value = der.encode(_BIT_STRING, b"\x00" + encode_dss_signature(r, P256_ORDER - s))
    return thumbprint(der.sequence(body[:after_algorithm], value))


def peek_sequence_num(bci: bytes) -> int:
    """The BCI's sequence number, UNVERIFIED: only to skip verifying an older BCI."""
    signed = parse_signed(bci)
    return int(parse_strict(registration_pb2.BrandCRLIdentifierTBS, signed.tbs).sequence_num)


def open_brand_crl_identifier(
    root: x509.Certificate,
    root_thumb: bytes,
    brand_id: str,
    bci: bytes,
    crls_der: Iterable[bytes],
    known_certificates: Mapping[bytes, x509.Certificate],
    at: datetime,
) -> RevocationSnapshot:
    """Verify a BCI and the CRLs it lists; ``known_certificates`` maps thumbprint to CA cert."""
    root_key = public_key_of(root)

    def signed_by_root(
        signature: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle
    ) -> tuple[PublicKey, None]:
        if signature.signer_cert_thumb != root_thumb:
            raise fail(
                ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "BCI not signed by the pinned root"
            )
        return root_key, None

    # Of the signed SET messages, the BCI alone is accepted high-S (as certificates and
    # CRLs are: ``setcore.pki.chain``): the BCI a bank published before it signed low-S
    # is what its ca.db and every peer hold for up to BCI_LIFETIME, and refusing it would
    # stop the bank's start and every chain check until the next one. A BCI's twin changes
    # nothing: a sequence number already held is never installed again (``TrustStore``).
    signed = open_signed(parse_signed(bci), BCI_CONTENT_TYPE, signed_by_root, accept_high_s=True)
    tbs = parse_strict(registration_pb2.BrandCRLIdentifierTBS, signed.tbs)
    if tbs.brand_id != brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "BCI of another brand")
    not_before, not_after = _from_ms(tbs.not_before_unix_ms), _from_ms(tbs.not_after_unix_ms)
    if not not_before <= at <= not_after:
        raise fail(
            ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
            outside_window("the BCI", not_before, not_after, at),
        )
    if len(tbs.crls) > MAX_BCI_CRLS:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "BCI lists too many CRLs")
    given = list(crls_der)
    if len(given) > MAX_BCI_CRLS:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "too many CRLs supplied")
    supplied = {thumbprint(der): der for der in given}
    by_issuer: dict[bytes, CrlStatus] = {}
    for entry in tbs.crls:
        if entry.issuer_thumb in by_issuer:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "BCI lists a CA twice")
        der = supplied.get(entry.crl_thumb)
        if der is None:
            raise fail(
                ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, "a CRL listed in the BCI is missing"
            )
        crl = load_crl(der)
        if crl_number(crl) != entry.crl_number:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CRL number differs from the BCI")
        next_update = crl.next_update_utc
        by_issuer[entry.issuer_thumb] = CrlStatus(
            issuer_thumb=entry.issuer_thumb,
            crl_number=entry.crl_number,
            crl_thumb=entry.crl_thumb,
            crl=crl,
            revoked_serials=frozenset(r.serial_number for r in crl),
            next_update=next_update,
        )
    snapshot = RevocationSnapshot(
        bci_thumb=thumbprint(bci),
        brand_id=brand_id,
        sequence_num=tbs.sequence_num,
        not_before=not_before,
        not_after=not_after,
        by_issuer=by_issuer,
    )
    issuers = {root_thumb: root, **known_certificates}
    for issuer_thumb in by_issuer:
        issuer = issuers.get(issuer_thumb)
        if issuer is not None:
            snapshot.status_for(issuer, issuer_thumb)
    return snapshot
