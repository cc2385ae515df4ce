"""``TrustStore``: the pinned brand root, the current revocation data, and caches.

Every signed message names its signer by certificate thumbprint, so ``resolve`` is on
the hot path of every message opener. Verified chains are cached by leaf thumbprint; a
hit is one dict lookup and two comparisons, no parsing and no signature. An entry lives
until the first of: the end of its chain's validity, the end of the BCI's window, a
CRL's nextUpdate, or the next change of revocation data (which clears the cache). A
hit still enforces the requested role and key usage.

Certificates are kept only once a path through them validated to the root: the leaf
and its CA certificate, so that later messages may leave them out of their bundles. A
bundle's other certificates, and all of a refused one's, are parsed for that validation
and dropped: whoever reaches a port that resolves bundles (a renewal CertReq at the CA,
an AuthReq at the gateway) cannot make the store hold anything a brand CA did not issue.

``judge_chain`` validates as ``verify_chain`` does and changes nothing (no counter, no
cache entry, no certificate kept): a party judging its own certificates as it starts is
no peer's traffic. It judges with the revocation data held, current or not.

Thread-safe: the caches are only changed under one lock; readers take a plain dict
lookup, which is atomic in CPython. A validation that raced a revocation update is not
cached, nor one made past the BCI's window or a CRL's nextUpdate, or with a BCI that
omits a CA of the chain (allowed without ``require_revocation``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError, fail
from setcore.pki.bci import (
    RevocationSnapshot,
    open_brand_crl_identifier,
    peek_sequence_num,
)
from setcore.pki.certificate import load_certificate, public_key_of
from setcore.pki.chain import MAX_ISSUER_CANDIDATES, Anchor, Candidate, IssuerLookup, validate
from setcore.pki.issuance import utc
from setcore.pki.roles import CertificateUsage
from setcore.pki.verified import VerifiedCertificate
from setpay.v1 import crypto_pb2

# A bundle carries a leaf and its CA (a few chains at most); more is not a setpay peer.
MAX_BUNDLE_CERTIFICATES = 16
# Cache bounds, oldest dropped first: a gateway sees many cardholders. Both caches hold
# certificates of validated paths only, which the brand's CAs issued: a leaf kept with its
# verified chain costs about 10 KiB of the process (measured, EC profile), so both caches
# full stay near 1 GiB. A bundle's certificates count against neither before their path
# validates (see the module docstring).
DEFAULT_MAX_CACHED_CHAINS = 100_000
DEFAULT_MAX_CACHED_CERTIFICATES = 100_000


@dataclass(frozen=True)
class TrustCounters:
    """How often chains were validated in full and served from the cache."""

    verifications: int
    cache_hits: int


@dataclass(frozen=True)
class _CachedChain:
    verified: VerifiedCertificate
    valid_until: datetime


class TrustStore:
    """Validates setpay certificate chains against one pinned brand root."""

    def __init__(
        self,
        root_der: bytes,
        *,
        require_revocation: bool = True,
        max_cached_chains: int = DEFAULT_MAX_CACHED_CHAINS,
        max_cached_certificates: int = DEFAULT_MAX_CACHED_CERTIFICATES,
    ) -> None:
        self._anchor = Anchor.from_der(root_der, thumbprint(root_der))
        self._require_revocation = require_revocation
        self._max_chains = max_cached_chains
        self._max_certificates = max_cached_certificates
        self._lock = threading.Lock()
        self._chains: dict[bytes, _CachedChain] = {}
        self._certificates: dict[bytes, Candidate] = {}  # on validated paths, bounded
        self._local: dict[bytes, Candidate] = {}  # added by the owner, kept
        self._by_subject: dict[x509.Name, list[bytes]] = {}
        self._revocation: RevocationSnapshot | None = None
        self._generation = 0
        self._verifications = 0
        self._hits = 0

    @property
    def root_der(self) -> bytes:
        """The pinned root certificate."""
        return self._anchor.root.der

    @property
    def root_thumb(self) -> bytes:
        """Thumbprint of the pinned root."""
        return self._anchor.root.thumb

    @property
    def brand_id(self) -> str:
        """The brand the root belongs to."""
        return self._anchor.brand_id

    @property
    def revocation(self) -> RevocationSnapshot | None:
        """The current verified BCI and CRLs, if any."""
        return self._revocation

    @property
    def counters(self) -> TrustCounters:
        """Full validations and cache hits so far."""
        with self._lock:
            return TrustCounters(self._verifications, self._hits)

    # -- certificates ---------------------------------------------------------------

    def _remember(self, candidate: Candidate) -> None:
        with self._lock:
            if candidate.thumb in self._certificates:
                return
            if len(self._certificates) >= self._max_certificates:
                # Oldest first; certificates added with add_certificates live elsewhere,
                # so the chains of many peers cannot push them out.
                oldest = next(iter(self._certificates))
                evicted = self._certificates.pop(oldest)
                self._unindex(evicted)
            self._certificates[candidate.thumb] = candidate
            self._by_subject.setdefault(candidate.cert.subject, []).append(candidate.thumb)

    def _unindex(self, candidate: Candidate) -> None:
        thumbs = self._by_subject.get(candidate.cert.subject, [])
        if candidate.thumb in thumbs and candidate.thumb not in self._local:
            thumbs.remove(candidate.thumb)
        if not thumbs:
            self._by_subject.pop(candidate.cert.subject, None)

    def _known(self, thumb: bytes) -> Candidate | None:
        return self._local.get(thumb) or self._certificates.get(thumb)

    def _parse(self, der: bytes, thumb: bytes | None = None) -> Candidate:
        """The known certificate, or ``der`` parsed and not kept (``_remember_path``)."""
        thumb = thumbprint(der) if thumb is None else thumb
        known = self._known(thumb)
        if known is not None:
            return known
        return Candidate(der, load_certificate(der), thumb)

    def _remember_path(self, verified: VerifiedCertificate, parsed: Iterable[Candidate]) -> None:
        """Keep the certificates of a path that validated (the pinned root is kept anyway)."""
        on_path = set(verified.chain_thumbs) - {self._anchor.root.thumb}
        for candidate in parsed:
            if candidate.thumb in on_path and self._known(candidate.thumb) is None:
                self._remember(candidate)

    def add_certificates(self, ders: Iterable[bytes]) -> None:
        """Keep certificates (e.g. CA certificates) for good, so bundles may leave them out.

        Nothing is trusted for being here: every chain is still validated to the root.
        """
        for der in ders:
            candidate = self._parse(der)
            with self._lock:
                if candidate.thumb not in self._local:
                    self._local[candidate.thumb] = candidate
                    thumbs = self._by_subject.setdefault(candidate.cert.subject, [])
                    if candidate.thumb not in thumbs:
                        thumbs.append(candidate.thumb)

    def certificate(self, thumb: bytes) -> bytes | None:
        """A known certificate (added, or on a path that validated) by thumbprint."""
        known = self._known(thumb)
        return None if known is None else known.der

    def _lookup(self, given: Sequence[Candidate]) -> IssuerLookup:
        def lookup(subject: x509.Name) -> Iterator[Candidate]:
            """Issuer candidates: the bundle's first, then certificates already known."""
            for candidate in given:
                if candidate.cert.subject == subject:
                    yield candidate
            for thumb in list(self._by_subject.get(subject, ())):
                known = self._known(thumb)
                if known is not None:
                    yield known

        return lookup

    @staticmethod
    def _issuer_choices(leaf: Candidate, lookup: IssuerLookup) -> Iterator[IssuerLookup]:
        """``lookup`` narrowed to one candidate for the leaf's issuer at a time.

        Path building takes the first candidate whose key signed the leaf, and a CA
        certificate's look-alike (same subject and key, another serial or validity, e.g.
        in the bundle, or kept from a path it completed before) signs as well as the real
        one, whose chain it may not complete (expired, or not in the BCI). Only the leaf's
        issuer is a choice: above it the path must end at the pinned root, which is tried
        first, within MAX_CHAIN_CERTIFICATES (3). So a refused chain costs at most
        MAX_ISSUER_CANDIDATES more validations, never a search over combinations.

        The candidates ``build_path`` passes over on sight (self-issued, or with a key off
        the allow-list) take none of those places, as they take none of its own: four such
        look-alikes ahead of the real CA certificate used to keep it from being tried.
        """
        wanted = leaf.cert.issuer
        seen: set[bytes] = set()
        passed_over: set[bytes] = set()
        for candidate in lookup(wanted):
            if len(seen) >= MAX_ISSUER_CANDIDATES:
                return
            thumb = candidate.thumb
            if thumb in seen or thumb in passed_over or candidate.cert.subject != wanted:
                continue
            if candidate.cert.issuer == wanted or not _key_allowed(candidate):
                passed_over.add(thumb)
                continue
            seen.add(thumb)

            def narrowed(subject: x509.Name, only: Candidate = candidate) -> Iterable[Candidate]:
                return [only] if subject == wanted else lookup(subject)

            yield narrowed

    # -- validation -----------------------------------------------------------------

    def _cached(
        self, leaf_thumb: bytes, expected_type: int, usage: CertificateUsage, at: datetime
    ) -> VerifiedCertificate | None:
        entry = self._chains.get(leaf_thumb)
        if entry is None:
            return None
        verified = entry.verified
        if not verified.not_before <= at <= entry.valid_until:
            return None
        if verified.certificate_type != expected_type or verified.usage is not usage:
            # Same answer the full validation would give, without redoing it.
            raise fail(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, "certificate role mismatch")
        with self._lock:
            self._hits += 1
        return verified

    def verify_chain(
        self,
        leaf_der: bytes,
        intermediates_der: Iterable[bytes],
        expected_type: int,
        usage: CertificateUsage | str,
        at: datetime | None = None,
    ) -> VerifiedCertificate:
        """Validate ``leaf_der`` for ``expected_type`` and ``usage``; raises ProtocolError."""
        usage = CertificateUsage(usage)
        when = utc(at)
        leaf_thumb = thumbprint(leaf_der)
        cached = self._cached(leaf_thumb, expected_type, usage, when)
        if cached is not None:
            return cached
        intermediates = _bundle(intermediates_der)
        return self._validate(leaf_der, leaf_thumb, intermediates, expected_type, usage, when)

    def judge_chain(
        self,
        leaf_der: bytes,
        intermediates_der: Iterable[bytes],
        expected_type: int,
        usage: CertificateUsage | str,
        at: datetime | None = None,
    ) -> VerifiedCertificate:
        """Validate as ``verify_chain`` does, leaving the store as it was: not counted, not
        cached, no certificate kept. For a party judging its own certificates as it starts
        (``setcore.pki.presented``), which is no peer's traffic: the counters and the cache
        stay those of the messages served.

        The revocation data held need not be current, as for a store that does not
        require revocation: a serial it lists is refused, a BCI past its window or a CRL
        past its nextUpdate is not (current data gives the same answer either way).
        Holding none, the chain is judged without revocation; holding a BCI that omits a
        CA of the chain, the link that CA issued is, and every other with what is held.
        """
        usage = CertificateUsage(usage)
        when = utc(at)
        intermediates = _bundle(intermediates_der)
        leaf = self._parse(leaf_der)
        given = [self._parse(der) for der in intermediates]
        return self._path(leaf, given, expected_type, usage, when, self._revocation, False)[0]

    def _validate(
        self,
        leaf_der: bytes,
        leaf_thumb: bytes,
        intermediates: list[bytes],
        expected_type: int,
        usage: CertificateUsage,
        at: datetime,
    ) -> VerifiedCertificate:
        with self._lock:
            self._verifications += 1
            generation, revocation = self._generation, self._revocation
        leaf = self._parse(leaf_der, leaf_thumb)
        given = [self._parse(der) for der in intermediates]
        verified, until = self._path(
            leaf, given, expected_type, usage, at, revocation, self._require_revocation
        )
        self._remember_path(verified, [leaf, *given])
        with self._lock:
            if generation == self._generation and until is not None:
                if len(self._chains) >= self._max_chains:
                    self._chains.pop(next(iter(self._chains)))
                self._chains[leaf_thumb] = _CachedChain(verified, until)
        return verified

    def _path(
        self,
        leaf: Candidate,
        given: list[Candidate],
        expected_type: int,
        usage: CertificateUsage,
        at: datetime,
        revocation: RevocationSnapshot | None,
        require_revocation: bool,
    ) -> tuple[VerifiedCertificate, datetime | None]:
        """``leaf`` validated through the bundle ``given`` and the certificates known, and
        until when the answer holds (``chain.validate``); nothing kept or counted."""
        lookup = self._lookup(given)

        def through(issuers: IssuerLookup) -> tuple[VerifiedCertificate, datetime | None]:
            return validate(
                self._anchor, leaf, issuers, expected_type, usage, at,
                revocation, require_revocation,
            )  # fmt: skip

        try:
            verified, until = through(lookup)
        except ProtocolError as refused:
            # The first issuer that signed the leaf led nowhere: with look-alikes about,
            # try each candidate alone before refusing, and refuse as the first try did
            # if none leads to the root. With one candidate, the first try was the only
            # one: a refused chain (revoked, expired, wrong role) costs one validation.
            choices = list(self._issuer_choices(leaf, lookup))
            if len(choices) < 2:
                raise
            for issuers in choices:
                try:
                    verified, until = through(issuers)
                    break
                except ProtocolError:
                    continue
            else:
                raise refused
        return verified, until

    def resolve(
        self,
        signature_thumb: bytes,
        bundle: crypto_pb2.CertBundle | None,
        expected_type: int,
        usage: CertificateUsage | str,
        at: datetime | None = None,
    ) -> VerifiedCertificate:
        """The validated certificate a signature names, from the cache, bundle or store."""
        usage = CertificateUsage(usage)
        when = utc(at)
        cached = self._cached(signature_thumb, expected_type, usage, when)
        if cached is not None:
            return cached
        certificates = list(bundle.certificates) if bundle is not None else []
        if len(certificates) > MAX_BUNDLE_CERTIFICATES:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "too many certificates")
        leaf_der = next((d for d in certificates if thumbprint(d) == signature_thumb), None)
        if leaf_der is None:
            leaf_der = self.certificate(signature_thumb)
        if leaf_der is None:
            raise fail(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, "signer certificate not found")
        return self._validate(leaf_der, signature_thumb, certificates, expected_type, usage, when)

    # -- revocation -----------------------------------------------------------------

    def update_revocation(
        self, bci: bytes, crls_der: Iterable[bytes], at: datetime | None = None
    ) -> bool:
        """Verify and install a BCI and its CRLs; False if it is the one already held.

        An older sequence number than the current BCI's is refused (rollback), as is a
        different BCI under the same sequence number.
        """
        current = self._revocation
        if current is not None and thumbprint(bci) == current.bci_thumb:
            return False
        known = {t: c.cert for t, c in [*self._certificates.items(), *self._local.items()]}
        snapshot = open_brand_crl_identifier(
            self._anchor.root.cert,
            self._anchor.root.thumb,
            self._anchor.brand_id,
            bci,
            crls_der,
            known,
            utc(at),
        )
        with self._lock:
            current = self._revocation
            if current is not None and snapshot.sequence_num <= current.sequence_num:
                raise fail(
                    ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
                    f"BCI sequence {snapshot.sequence_num} does not follow {current.sequence_num}",
                )
            self._revocation = snapshot
            self._generation += 1
            self._chains.clear()
        return True

    def update_from_bundle(self, bundle: crypto_pb2.CertBundle, at: datetime | None = None) -> bool:
        """Install the bundle's BCI and CRLs if they are newer than the current ones.

        A peer holding an older BCI than ours is not an error: ours is kept. A newer one
        that does not verify raises like ``update_revocation``.
        """
        if not bundle.brand_crl_identifier:
            return False
        current = self._revocation
        if current is not None:
            if thumbprint(bundle.brand_crl_identifier) == current.bci_thumb:
                return False
            if peek_sequence_num(bundle.brand_crl_identifier) <= current.sequence_num:
                return False
        return self.update_revocation(bundle.brand_crl_identifier, bundle.crls, at)


def _key_allowed(candidate: Candidate) -> bool:
    """Whether path building would verify a signature with the candidate's key."""
    try:
        public_key_of(candidate.cert)
    except ProtocolError:
        return False
    return True


def _bundle(intermediates_der: Iterable[bytes]) -> list[bytes]:
    """A peer's bundle of intermediates, refused past MAX_BUNDLE_CERTIFICATES before any
    of it is parsed."""
    intermediates = list(intermediates_der)
    if len(intermediates) > MAX_BUNDLE_CERTIFICATES:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "too many certificates")
    return intermediates
