"""Certificate path validation to the pinned brand root (SET-PROTOCOL.md 9.3 item 13).

``validate`` builds the path from the leaf up through the supplied issuers to the
pinned root, checking each link by issuer/subject name AND signature, then checks:

    every certificate   inside its validity window at ``at`` (else EXPIRED_CERTIFICATE,
                        also for not-yet-valid); allowed key and signature algorithm;
                        no extendedKeyUsage limiting it to other purposes than SET's
                        (WRONG_CERTIFICATE_ROLE); no critical extension other than
                        basicConstraints/keyUsage/extendedKeyUsage
                        (UNRECOGNIZED_EXTENSION); setpay's brandId equal to the root's
    every issuer        basicConstraints cA with a pathLenConstraint that allows the
                        path below it; keyUsage keyCertSign; its certificateType the one
                        ``roles.issuer_type_for`` demands of the child's issuer
                        (WRONG_CERTIFICATE_ROLE: a merchant certificate issued by the
                        Cardholder CA is refused)
    the leaf            certificateType equal to the expected one, and its key usage
                        the requested one (WRONG_CERTIFICATE_ROLE); a key-exchange leaf
                        names a KEM that fits its key; a cardholder leaf carries a
                        blinded account id, a merchant leaf its merchantData
    revocation          every certificate below the root checked against its issuer's
                        CRL as listed by the current BrandCRLIdentifier
                        (REVOKED_CERTIFICATE); where revocation is required, no usable
                        BCI, a CRL past its nextUpdate or a CA the BCI omits raises
                        ``RevocationUnavailable``; where it is not, such stale data
                        still refuses what it lists as revoked, and an omitted CA's link
                        is judged without it (neither answer cached); a CA certificate's
                        twin (below) is no omitted CA: judged with the certificate's CRL,
                        its path is refused as revoked if that lists one on it, else
                        as the twin's (INVALID_CERTIFICATE), in every mode

A path that cannot be built to the root, or a certificate whose signature does not
verify, is INVALID_CERTIFICATE. Revocation is current state: a revoked certificate is
refused whatever ``at`` says. For an ``at`` before the current BCI was issued, that BCI
serves: it lists every revocation up to its issue.

A certificate's ECDSA signature is accepted with either s (``verify_directly_issued_by``
does not look), unlike a SET message's (``setcore.signed``): a bank's root and CA
certificates issued before setpay signed low-S may be high-S, and a root cannot be
reissued without a new bank. So anyone can make a certificate's twin, (r, n - s): other
DER, another thumbprint, the same key, names, serial and validity. Validation gives the
twin the answer it gives the certificate (revocation goes by issuer and serial), and a
path through a CA certificate's twin is refused once a BCI is loaded, whether revocation
is required or not, as the BCI names each CA's CRL by that CA's thumbprint: the BCI alone
says which CA certificates are current, and no setpay party sends a twin, only whoever
altered a bundle, who could as well have dropped it. Refused, but judged first: were the
twin taken for a CA the BCI omits, its link would be judged without revocation where that
is not required, and a certificate the CA revoked accepted through it. So
``RevocationSnapshot.status_for`` finds the twin the CRL the BCI lists for the
certificate (the twin's twin), a certificate it lists is refused as revoked, as through
the certificate, and only a path with nothing revoked is refused as the twin's. Beyond
that, a twin is harmless as long as a thumbprint is only a name to fetch bytes, key a
cache or check an echo (a twin named there fails to match, which an active attacker could
have had by dropping the message); whatever decides something about a certificate, its
revocation above all, must go by issuer and serial instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from hsm.base import PublicKey
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.pki import extensions, roles
from setcore.pki.bci import RevocationSnapshot, RevocationUnavailable
from setcore.pki.certificate import (
    check_signature_algorithm,
    common_name_of,
    load_certificate,
    outside_window,
    public_key_of,
)
from setcore.pki.issuance import check_kem
from setcore.pki.roles import CertificateUsage
from setcore.pki.verified import VerifiedCertificate

# Leaf, its CA, the brand root: the longest path setpay's tree has (roles.py). Anything
# longer is refused before more signatures are spent on it.
MAX_CHAIN_CERTIFICATES = 3
# Issuers sharing one subject name that are tried per link, the pinned root among them
# when it bears the name (``TrustStore`` retries as many, one at a time): a CA overlapping
# an old and a re-keyed certificate needs two; a bundle stuffed with look-alikes gets no
# more. A candidate whose key is off the allow-list is passed over before its signature
# check and does not count: its key was read, nothing was verified with it. So this bounds
# signature checks, not key reads: those are bounded per link by the bundle's
# certificates (``truststore.MAX_BUNDLE_CERTIFICATES``) plus the certificates already
# known under the name (kept only from paths that validated, so a brand CA issued them).
MAX_ISSUER_CANDIDATES = 4
# The only extensions setpay understands when marked critical.
_CRITICAL_ALLOWED = frozenset(
    {x509.BasicConstraints.oid, x509.KeyUsage.oid, x509.ExtendedKeyUsage.oid}
)


@dataclass(frozen=True)
class Candidate:
    """A parsed certificate with its DER and thumbprint."""

    der: bytes = field(repr=False)
    cert: x509.Certificate = field(repr=False)
    thumb: bytes


@dataclass(frozen=True)
class Anchor:
    """The pinned brand root."""

    root: Candidate
    brand_id: str

    @classmethod
    def from_der(cls, der: bytes, thumb: bytes) -> Anchor:
        """Check that ``der`` is a self-signed setpay brand root and pin it."""
        cert = load_certificate(der)
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "root is not self-signed") from exc
        brand_id = extensions.read_brand(cert)
        if extensions.read_certificate_type(cert) != roles.BRAND_ROOT or brand_id is None:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "not a setpay brand root")
        return cls(Candidate(der, cert, thumb), brand_id)


#: Finds certificates by subject name (the bundle's, then any the caller already knows).
IssuerLookup = Callable[[x509.Name], Iterable[Candidate]]


def _invalid(reason: str) -> ProtocolError:
    return fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, reason)


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        # UnsupportedAlgorithm: a look-alike issuer whose key type cryptography cannot
        # read (an altered key OID) signed nothing setpay could check.
        return False
    return True


def build_path(anchor: Anchor, leaf: Candidate, lookup: IssuerLookup) -> list[Candidate]:
    """The verified path leaf .. root (inclusive); each link checked by name and signature."""
    if leaf.thumb == anchor.root.thumb:
        return [leaf]
    path = [leaf]
    while True:
        child = path[-1].cert
        check_signature_algorithm(child)
        wanted = child.issuer
        named: list[Candidate] = []
        if anchor.root.cert.subject == wanted:
            named.append(anchor.root)
        seen = {c.thumb for c in path} | {anchor.root.thumb}
        off_list: ProtocolError | None = None
        for candidate in lookup(wanted):
            if len(named) >= MAX_ISSUER_CANDIDATES:
                break
            # A self-issued certificate other than the pinned root can never lead to it.
            self_issued = candidate.cert.issuer == candidate.cert.subject
            if candidate.thumb in seen or candidate.cert.subject != wanted or self_issued:
                continue
            # The key is checked before a signature is verified with it: one verification
            # with a look-alike's RSA key of a huge exponent costs ~80 normal ones
            # (``setcore.signed.algorithm_for_public_key``), and _check_every, which
            # refuses that key too, runs only once the path is built.
            try:
                public_key_of(candidate.cert)
            except ProtocolError as refused:
                off_list = off_list or refused
                continue
            named.append(candidate)
        if not named:
            # The key's own refusal (ALGORITHM_NOT_ALLOWED), as before the key was checked
            # here, when an issuer named was found but none had an allowed key.
            raise off_list or _invalid("no chain to the pinned brand root")
        issuer = next((c for c in named if _signed_by(child, c.cert)), None)
        if issuer is None:
            raise _invalid("certificate signature does not verify")
        path.append(issuer)
        if issuer is anchor.root:
            return path
        if len(path) >= MAX_CHAIN_CERTIFICATES:
            raise _invalid("certificate chain too long")


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise _invalid("certificate has no keyUsage") from None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _basic_constraints(cert)
    return constraints is not None and constraints.ca


def _check_purposes(cert: x509.Certificate) -> None:
    # An extendedKeyUsage limits a key to the purposes it lists (RFC 5280 4.2.1.12).
    # setpay defines no purpose of its own: a certificate limited to others (TLS, code
    # signing) is not for SET, wherever it sits in the path.
    try:
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in purposes:
        raise fail(
            ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
            f"certificate {common_name_of(cert)!r} limited by extendedKeyUsage to other uses",
        )


def _check_every(anchor: Anchor, path: list[Candidate], at: datetime) -> list[int]:
    types: list[int] = []
    for candidate in path:
        cert = candidate.cert
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise fail(
                ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE,
                outside_window(
                    f"certificate {common_name_of(cert)!r}",
                    cert.not_valid_before_utc,
                    cert.not_valid_after_utc,
                    at,
                ),
            )
        public_key_of(cert)
        for extension in cert.extensions:
            if extension.critical and extension.oid not in _CRITICAL_ALLOWED:
                raise fail(
                    ErrorCode.ERROR_CODE_UNRECOGNIZED_EXTENSION,
                    f"unknown critical extension {extension.oid.dotted_string}",
                )
        if extensions.read_brand(cert) != anchor.brand_id:
            raise _invalid("certificate of another brand (or none)")
        certificate_type = extensions.read_certificate_type(cert)
        if certificate_type is None:
            raise _invalid("certificate has no setpay certificateType")
        _check_purposes(cert)
        types.append(certificate_type)
    return types


def _check_issuers(path: list[Candidate], types: list[int]) -> None:
    for index in range(1, len(path)):
        issuer, child = path[index].cert, path[index - 1].cert
        constraints = _basic_constraints(issuer)
        if constraints is None or not constraints.ca:
            raise _invalid("issuer is not a CA")
        # CA certificates between this issuer and the leaf (the leaf itself excluded).
        below = index - 1
        if constraints.path_length is not None and below > constraints.path_length:
            raise _invalid("path length constraint exceeded")
        if not _key_usage(issuer).key_cert_sign:
            raise _invalid("issuer key may not sign certificates")
        required = roles.issuer_type_for(types[index - 1], _is_ca(child))
        if types[index] != required:
            raise fail(
                ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
                f"{roles.type_name(types[index - 1])} issued by a {roles.type_name(types[index])}",
            )


def usage_of(cert: x509.Certificate) -> CertificateUsage:
    """Signature or key-exchange, from keyUsage; a certificate is never both."""
    usage = _key_usage(cert)
    exchange = usage.key_agreement or usage.key_encipherment
    if usage.digital_signature and not exchange:
        return CertificateUsage.SIGNATURE
    if exchange and not usage.digital_signature:
        return CertificateUsage.KEY_EXCHANGE
    raise _invalid("keyUsage is neither signature nor key exchange")


def _check_leaf_role(
    leaf: x509.Certificate, leaf_type: int, expected_type: int, usage: CertificateUsage
) -> CertificateUsage:
    if leaf_type != expected_type:
        raise fail(
            ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
            f"{roles.type_name(leaf_type)} where {roles.type_name(expected_type)} is required",
        )
    if leaf_type in roles.END_ENTITY_TYPES and _is_ca(leaf):
        raise _invalid("end-entity certificate marked as a CA")
    found = usage_of(leaf)
    if found is not usage:
        raise fail(
            ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE,
            f"{found.value} certificate where {usage.value} is required",
        )
    return found


def _check_leaf_extensions(leaf: x509.Certificate, key: PublicKey, leaf_type: int) -> None:
    kem = extensions.read_kem(leaf)
    if usage_of(leaf) is CertificateUsage.KEY_EXCHANGE:
        if kem is None:
            raise _invalid("key-exchange certificate names no KEM")
        check_kem(key, kem)
        usage = _key_usage(leaf)
        if isinstance(key, ec.EllipticCurvePublicKey) and not usage.key_agreement:
            raise _invalid("EC key-exchange certificate without keyAgreement")
        if isinstance(key, rsa.RSAPublicKey) and not usage.key_encipherment:
            raise _invalid("RSA key-exchange certificate without keyEncipherment")
    elif kem is not None:
        raise _invalid("signature certificate names a KEM")
    if leaf_type == roles.CARDHOLDER and extensions.read_blinded_account(leaf) is None:
        raise _invalid("cardholder certificate without a blinded account id")
    if leaf_type == roles.MERCHANT and extensions.read_merchant_data(leaf) is None:
        raise _invalid("merchant certificate without merchantData")


def _check_revocation(
    path: list[Candidate],
    at: datetime,
    revocation: RevocationSnapshot | None,
    require_revocation: bool,
    until: datetime,
) -> datetime | None:
    """Until when the answer holds; None when it holds for ``at`` alone (not cacheable)."""
    if revocation is None:
        if require_revocation:
            raise RevocationUnavailable("no BrandCRLIdentifier loaded")
        return until  # installing revocation data clears the cache
    current = revocation.covers(at)
    if not current and require_revocation:
        raise RevocationUnavailable("the BrandCRLIdentifier is not current")
    # A BCI past its window, or a CRL past its nextUpdate (tolerated only when revocation
    # is not required), still lists revocations: a revoked certificate stays refused,
    # only the answer holds for ``at`` alone. So does a BCI that omits one CA's CRL: the
    # link that CA issued is judged without revocation, every other with what is held.
    # A CA certificate's twin is no omitted CA: ``status_for`` gives it the CA's CRL, and
    # the path is refused once every link has been checked, so that a revoked certificate
    # on it is refused as revoked (the module docstring).
    twin: ProtocolError | None = None
    for index in range(len(path) - 1):
        child, issuer = path[index], path[index + 1]
        try:
            status = revocation.status_for(issuer.cert, issuer.thumb)
        except RevocationUnavailable:
            if require_revocation:
                raise
            current = False
            continue
        if status.issuer_thumb != issuer.thumb and twin is None:
            twin = _invalid(
                "the BrandCRLIdentifier lists no CRL for this CA certificate"
                f" {common_name_of(issuer.cert)!r}, only for its twin (the other ECDSA s):"
                " send the CA certificate as issued"
            )
        if current and status.next_update is not None:
            if status.next_update < at:
                if require_revocation:
                    raise RevocationUnavailable("a CRL is past its nextUpdate")
                current = False
            else:
                until = min(until, status.next_update)
        if child.cert.serial_number in status.revoked_serials:
            raise fail(
                ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE,
                f"certificate {common_name_of(child.cert)!r} is revoked",
            )
    if twin is not None:
        raise twin
    return min(until, revocation.not_after) if current else None


def validate(
    anchor: Anchor,
    leaf: Candidate,
    lookup: IssuerLookup,
    expected_type: int,
    usage: CertificateUsage,
    at: datetime,
    revocation: RevocationSnapshot | None,
    require_revocation: bool,
) -> tuple[VerifiedCertificate, datetime | None]:
    """Validate ``leaf``; returns the result and the instant until which it stays valid
    (None: valid as of ``at`` only, checked against stale revocation data: a BCI past
    its window, a CRL past its nextUpdate, or a BCI omitting a CA of the path)."""
    path = build_path(anchor, leaf, lookup)
    types = _check_every(anchor, path, at)
    _check_issuers(path, types)
    cert = leaf.cert
    found_usage = _check_leaf_role(cert, types[0], expected_type, usage)
    key = public_key_of(cert)
    _check_leaf_extensions(cert, key, types[0])
    not_before = max(c.cert.not_valid_before_utc for c in path)
    not_after = min(c.cert.not_valid_after_utc for c in path)
    until = _check_revocation(path, at, revocation, require_revocation, not_after)
    verified = VerifiedCertificate(
        der=leaf.der,
        cert=cert,
        public_key=key,
        thumbprint=leaf.thumb,
        certificate_type=types[0],
        usage=found_usage,
        subject_id=common_name_of(cert),
        serial_number=cert.serial_number,
        brand_id=anchor.brand_id,
        blinded_account=extensions.read_blinded_account(cert),
        merchant_data=extensions.read_merchant_data(cert),
        kem=extensions.read_kem(cert),
        chain_thumbs=tuple(c.thumb for c in path),
        not_before=not_before,
        not_after=not_after,
    )
    return verified, until
