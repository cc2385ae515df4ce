"""Publishing revocation: CRLs and the BrandCRLIdentifier, in ``ca.db``.

After every revocation, in the same transaction as the revocation itself: a new CRL
(next cRLNumber) of the CA that issued the certificate, listing everything that CA has
revoked but what expired more than ``EXPIRED_CRL_GRACE`` ago, and a new BCI (sequence + 1)
naming the current CRL of every CA of the brand. Before a CRL's nextUpdate or the BCI's
notAfter comes near, ``refresh`` re-issues them the same way, so verifiers never see stale
revocation data while the bank runs. So it does, however long they have left, for one
issued later than now by more than ``CLOCK_SKEW`` (``issued_ahead``): its issuer's clock
ran ahead and has stepped back since.

Readers (``current_revocation``, the revocation watcher) take the newest BCI and exactly
the CRLs it lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography import x509

from gateway.ca.errors import AlreadyRevoked, NotRevocable, UnknownCertificate
from gateway.ca.keys import AuthorityKeys
from gateway.ca.records import BciRecord, CrlRecord, IssuedCertificate
from gateway.ca.store import CaStore, StoreTransaction
from setcore.encoding import thumbprint
from setcore.pki import extensions
from setcore.pki.bci import BCI_LIFETIME, issue_brand_crl_identifier
from setcore.pki.certificate import common_name_of
from setcore.pki.chain import usage_of
from setcore.pki.crl import CRL_LIFETIME, RevokedCertificate, issue_crl
from setcore.pki.issuance import CLOCK_SKEW, IssuingCA, utc
from setcore.registration import RevocationData

# Re-issue a CRL or the BCI once less than half of its lifetime is left: a verifier that
# fetched the previous one just before that still holds a valid one, and a bank that is
# down for less than half a lifetime comes back before anything lapses.
REFRESH_FRACTION = 0.5
# A revoked certificate stays on its CA's CRLs until it has been expired this long, then
# leaves them (RFC 5280 5.1.2.6): every verifier refuses it as expired by then, and CRLs
# stapled to every CA answer no longer grow with every revocation ever made (at ~39 bytes
# an entry they would pass the 1 MiB message limit near 27,000). One CRL lifetime puts
# it on at least one CRL issued after it expired (refreshed every half lifetime), as the
# RFC asks, and a clock a little behind still finds it there.
EXPIRED_CRL_GRACE = CRL_LIFETIME
# How a CA certificate's usage is recorded (end entities: signature / key-exchange).
CA_USAGE = "ca"
# How far after now a CRL or BCI may have been issued and still be taken as issued now:
# a BCI's notBefore is its issue less CLOCK_SKEW (``setcore.pki.bci``), so up to this far
# ahead (another host's clock a little ahead of this one) it is valid here already.
_AHEAD_MS = int(CLOCK_SKEW.total_seconds() * 1000)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def issued_ahead(issued_ms: int, now_ms: int) -> bool:
    """Whether a CRL or BCI was issued more than ``CLOCK_SKEW`` after ``now_ms``: by a
    clock that ran ahead and has stepped back since (an NTP step, a virtual machine's
    clock set right). Such data is re-issued at once, however long it has left. A
    verifier whose clock is right refuses such a BCI as not yet valid (its notBefore is
    still to come): a feed keeps its older one until that lapses, and a message carrying
    it stapled is refused whole. Until this clock caught up, nothing newer would reach
    them. And such a CRL left out every revoked certificate
    that had been expired ``EXPIRED_CRL_GRACE`` by its issue, some of them valid now:
    the bank's own trust store, which installed it while its clock ran ahead, would take
    them as unrevoked."""
    return issued_ms - now_ms > _AHEAD_MS


def describe_certificate(der: bytes, issuer_thumb: bytes, issued_at: datetime) -> IssuedCertificate:
    """The record of a SET certificate of this brand."""
    cert = x509.load_der_x509_certificate(der)
    certificate_type = extensions.read_certificate_type(cert)
    if certificate_type is None:
        raise ValueError("not a setpay SET certificate")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = CA_USAGE if constraints.ca else usage_of(cert).value
    return IssuedCertificate(
        thumb=thumbprint(der),
        serial=cert.serial_number,
        issuer_thumb=issuer_thumb,
        certificate_type=certificate_type,
        usage=usage,
        subject=common_name_of(cert),
        der=der,
        not_after_ms=_ms(cert.not_valid_after_utc),
        issued_ms=_ms(issued_at),
    )


def record_certificate(
    tx: StoreTransaction, der: bytes, issuer: IssuingCA, at: datetime
) -> IssuedCertificate:
    """Record a certificate the brand just issued."""
    issued = describe_certificate(der, issuer.thumbprint, at)
    tx.add_certificate(issued)
    return issued


def _issue_crl(tx: StoreTransaction, ca: IssuingCA, at: datetime) -> CrlRecord:
    latest = tx.latest_crl(ca.thumbprint)
    number = 1 if latest is None else latest.crl_number + 1
    revoked = [
        RevokedCertificate(serial, datetime.fromtimestamp(ms / 1000, tz=UTC))
        for serial, ms in tx.revoked_by(ca.thumbprint, _ms(at - EXPIRED_CRL_GRACE))
    ]
    der = issue_crl(ca, revoked, number, at=at)
    record = CrlRecord(
        issuer_thumb=ca.thumbprint,
        crl_number=number,
        thumb=thumbprint(der),
        der=der,
        next_update_ms=_ms(at + CRL_LIFETIME),
        issued_ms=_ms(at),
    )
    tx.add_crl(record)
    return record


def publish(
    tx: StoreTransaction, keys: AuthorityKeys, changed: Iterable[bytes], at: datetime
) -> BciRecord:
    """New CRLs for the CAs in ``changed`` (and any without one), then a new BCI."""
    reissue = set(changed)
    current: list[tuple[IssuingCA, CrlRecord]] = []
    for ca in keys.issuers:
        latest = tx.latest_crl(ca.thumbprint)
        if latest is None or ca.thumbprint in reissue:
            latest = _issue_crl(tx, ca, at)
        current.append((ca, latest))
    sequence = tx.latest_bci_sequence() + 1
    bci = issue_brand_crl_identifier(
        keys.root, sequence, [(ca.der, crl.der) for ca, crl in current], at=at
    )
    record = BciRecord(
        sequence_num=sequence,
        der=bci,
        crl_thumbs=tuple(crl.thumb for _, crl in current),
        not_after_ms=_ms(at + BCI_LIFETIME),
        issued_ms=_ms(at),
    )
    tx.add_bci(record)
    return record


def publish_initial(
    store: CaStore, keys: AuthorityKeys, *, at: datetime | None = None
) -> BciRecord:
    """The first CRL of every CA and BCI number 1."""
    with store.write() as tx:
        if tx.latest_bci() is not None:
            raise ValueError("revocation data was published before")
        return publish(tx, keys, (), utc(at))


def find_certificate(
    tx: StoreTransaction, *, serial: int | None = None, thumb: bytes | None = None
) -> IssuedCertificate:
    """The certificate with this thumbprint or serial number; ``UnknownCertificate`` else."""
    if thumb is not None:
        found = tx.certificate(thumb)
        if found is None:
            raise UnknownCertificate("no certificate with that thumbprint")
        return found
    if serial is None:
        raise UnknownCertificate("name a certificate by serial number or thumbprint")
    matches = tx.certificates_by_serial(serial)
    if not matches:
        raise UnknownCertificate("no certificate with that serial number")
    if len(matches) > 1:
        raise UnknownCertificate("two CAs issued that serial number: name it by thumbprint")
    return matches[0]


def revoke(
    store: CaStore,
    keys: AuthorityKeys,
    *,
    serial: int | None = None,
    thumb: bytes | None = None,
    at: datetime | None = None,
) -> tuple[IssuedCertificate, BciRecord]:
    """Revoke a certificate and publish the issuer's new CRL and a new BCI, atomically."""
    when = utc(at)
    with store.write() as tx:
        cert = find_certificate(tx, serial=serial, thumb=thumb)
        issuer = keys.issuer(cert.issuer_thumb)
        if issuer is None or cert.thumb == cert.issuer_thumb:
            raise NotRevocable("no CRL of this brand covers that certificate")
        if tx.is_revoked(cert.thumb):
            raise AlreadyRevoked("that certificate is already revoked")
        tx.revoke(cert, _ms(when))
        bci = publish(tx, keys, (issuer.thumbprint,), when)
    return cert, bci


def refresh(store: CaStore, keys: AuthorityKeys, *, at: datetime | None = None) -> bool:
    """Re-issue the CRLs and the BCI that are past ``REFRESH_FRACTION`` of their lifetime,
    or were issued ahead of ``at`` (``issued_ahead``)."""
    when = utc(at)
    now = _ms(when)
    crl_margin = int(CRL_LIFETIME.total_seconds() * 1000 * REFRESH_FRACTION)
    with store.write() as tx:
        due = []
        for ca in keys.issuers:
            crl = tx.latest_crl(ca.thumbprint)
            if (
                crl is None
                or crl.next_update_ms - now < crl_margin
                or issued_ahead(crl.issued_ms, now)
            ):
                due.append(ca.thumbprint)
        bci = tx.latest_bci()
        if not due and bci is not None and not bci_due(bci, at=when):
            return False
        publish(tx, keys, due, when)
    return True


def bci_due(bci: BciRecord, *, at: datetime | None = None) -> bool:
    """True when ``refresh`` would re-issue the BCI (cheap: no database access): less
    than ``REFRESH_FRACTION`` of its lifetime left, or issued ahead of ``at``
    (``issued_ahead``)."""
    now = _ms(utc(at))
    margin = int(BCI_LIFETIME.total_seconds() * 1000 * REFRESH_FRACTION)
    return bci.not_after_ms - now < margin or issued_ahead(bci.issued_ms, now)


def current_revocation(store: CaStore) -> tuple[BciRecord, RevocationData] | None:
    """The newest BCI and exactly the CRLs it lists (None before anything was published)."""
    with store.read() as tx:
        bci = tx.latest_bci()
        if bci is None:
            return None
        crls = tx.crl_ders(bci.crl_thumbs)
    return bci, RevocationData(bci.der, tuple(crls))
