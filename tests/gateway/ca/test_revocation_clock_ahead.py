"""Revocation data published while the bank's clock ran ahead, once the clock steps back.

A clock set forward by mistake and then set right (an NTP step, a virtual machine's clock
corrected) left behind, in ca.db, a BCI dated ahead and perhaps CRLs too. Every verifier
whose clock is right refused that BCI as not yet valid, and ``refresh`` took it for fresh
(it has all its life ahead), so nothing newer came until the bank's clock caught up with
it. Worse, a CRL issued ahead leaves off every revoked certificate expired by then, and
the bank's own trust store, which installed it while its clock ran ahead, took those
certificates, still valid now, as unrevoked. Data issued more than ``CLOCK_SKEW`` ahead is
re-issued at once; up to that far ahead it is another host's clock within tolerance, and
kept. Real parts: the bank's keys, a ca.db of the test's own, its trust store.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.ca import RevocationWatcher, publishing
from gateway.ca.keys import AuthorityKeys
from gateway.ca.records import BciRecord
from gateway.ca.store import CaStore
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.issuance import CLOCK_SKEW, issue_cardholder
from setcore.pki.roles import CARDHOLDER, CertificateUsage

from .conftest import Bank
from .revocation_support import WallClock, authority_keys, bank_trust, new_ca_db

# Whole seconds, so that every millisecond count below is exact.
SKEW_MS = int(CLOCK_SKEW.total_seconds() * 1000)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _latest_sequence(store: CaStore) -> int:
    with store.read() as tx:
        return tx.latest_bci_sequence()


def _newest(store: CaStore) -> tuple[BciRecord, bytes, tuple[bytes, ...]]:
    current = publishing.current_revocation(store)
    assert current is not None
    bci, data = current
    return bci, data.bci, tuple(data.crls)


def test_issued_ahead_is_more_than_the_clock_skew_after_now() -> None:
    now = 1_800_000_000_000
    assert not publishing.issued_ahead(now, now)
    assert not publishing.issued_ahead(now - 10 * SKEW_MS, now)  # issued long before
    assert not publishing.issued_ahead(now + SKEW_MS, now)  # valid here already
    assert publishing.issued_ahead(now + SKEW_MS + 1, now)


def test_a_bci_issued_ahead_is_published_again_once_the_clock_stepped_back(
    ec_bank: Bank, tmp_path: Path
) -> None:
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    now = _now()
    try:
        # The clock two days ahead: the first BCI has lapsed by it, so it is re-issued.
        assert publishing.refresh(store, keys, at=now + timedelta(days=2))
        ahead, bci_der, crls = _newest(store)
        peer = bank_trust(ec_bank.pki)  # a verifier whose clock is right
        with pytest.raises(ProtocolError) as refused:
            peer.update_revocation(bci_der, crls, at=now)
        assert refused.value.code == ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE
        assert "is not valid before" in refused.value.reason
        # The clock set right: the BCI dated ahead is due at once, and re-issued.
        assert publishing.bci_due(ahead, at=now)
        assert publishing.refresh(store, keys, at=now)
        newest, bci_der, crls = _newest(store)
        assert newest.sequence_num == ahead.sequence_num + 1
        assert peer.update_revocation(bci_der, crls, at=now)
        assert not publishing.bci_due(newest, at=now)
        assert not publishing.refresh(store, keys, at=now)  # once, not on every call
    finally:
        store.close()


@pytest.mark.parametrize(
    ("ahead", "republished"),
    [(CLOCK_SKEW, False), (CLOCK_SKEW + timedelta(seconds=1), True)],
    ids=["skew", "past-skew"],
)
def test_a_bci_at_most_the_clock_skew_ahead_is_kept(
    ec_bank: Bank, tmp_path: Path, ahead: timedelta, republished: bool
) -> None:
    """Another host's clock a little ahead dates a BCI that a verifier here takes: it is
    kept, and ``refresh`` changes nothing; a second more, and it is re-issued."""
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    now = _now()
    try:
        with store.write() as tx:
            publishing.publish(tx, keys, (), now + ahead)
        issued, bci_der, crls = _newest(store)
        peer = bank_trust(ec_bank.pki)
        if republished:
            with pytest.raises(ProtocolError) as refused:
                peer.update_revocation(bci_der, crls, at=now)
            assert refused.value.code == ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE
        else:
            assert peer.update_revocation(bci_der, crls, at=now)
        assert publishing.bci_due(issued, at=now) is republished
        assert publishing.refresh(store, keys, at=now) is republished
        assert _latest_sequence(store) == issued.sequence_num + int(republished)
    finally:
        store.close()


def _revoked_cardholder(store: CaStore, keys: AuthorityKeys, lifetime: timedelta) -> bytes:
    """A cardholder certificate issued now for ``lifetime``, recorded and revoked."""
    ca = keys.cardholder.issuing
    at = datetime.now(UTC)
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = issue_cardholder(
        ca, public, os.urandom(32), at + timedelta(days=900), at=at, lifetime=lifetime
    )
    with store.write() as tx:
        recorded = publishing.record_certificate(tx, der, ca, at)
    publishing.revoke(store, keys, thumb=recorded.thumb)
    return der


def test_a_revoked_certificate_a_crl_issued_ahead_left_off_is_refused_again(
    ec_bank: Bank, tmp_path: Path
) -> None:
    """The CA's watcher re-publishes while its clock runs 60 days ahead: the Cardholder
    CA's new CRL leaves off a revoked certificate of 30 days, expired by then. Once the
    clock is set right, the certificate is valid again, and refused as revoked."""
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    trust, wall = bank_trust(ec_bank.pki), WallClock()
    cca = ec_bank.pki.cca.signature_cert
    try:
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=0, wall_clock=wall)
        revoked = _revoked_cardholder(store, keys, timedelta(days=30))
        assert watcher.check()

        def judged() -> ProtocolError:
            with pytest.raises(ProtocolError) as refused:
                trust.verify_chain(revoked, (cca,), CARDHOLDER, CertificateUsage.SIGNATURE, wall())
            return refused.value

        assert judged().code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
        wall.ahead = timedelta(days=60)
        assert watcher.check()  # re-published and installed, dated 60 days ahead
        assert judged().code == ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE
        ahead = _latest_sequence(store)
        wall.ahead = timedelta(0)
        watcher.check()
        assert judged().code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
        assert _latest_sequence(store) == ahead + 1
        assert trust.revocation is not None and trust.revocation.sequence_num == ahead + 1
    finally:
        store.close()


def test_a_watcher_that_never_installed_the_ahead_data_publishes_again(
    ec_bank: Bank, tmp_path: Path
) -> None:
    """Another process (``setpay ca revoke``) revokes while the host's clock runs an hour
    ahead; the clock is set right before this worker polls. The worker's own BCI has most
    of its life left, and the ahead one cannot be installed: it re-publishes all the same,
    at its next poll, and the certificate is refused as revoked."""
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    trust, wall = bank_trust(ec_bank.pki), WallClock()
    cca = ec_bank.pki.cca.signature_cert
    ca = keys.cardholder.issuing
    at = datetime.now(UTC)
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = issue_cardholder(ca, public, os.urandom(32), at + timedelta(days=900), at=at)
    with store.write() as tx:
        recorded = publishing.record_certificate(tx, der, ca, at)
    try:
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=0, wall_clock=wall)
        watcher.check()
        publishing.revoke(store, keys, thumb=recorded.thumb, at=at + timedelta(hours=1))
        ahead = _latest_sequence(store)
        watcher.check()  # the ahead BCI refused as not yet valid: found ahead
        watcher.check()  # re-published, and installed
        assert _latest_sequence(store) == ahead + 1
        assert trust.revocation is not None and trust.revocation.sequence_num == ahead + 1
        with pytest.raises(ProtocolError) as refused:
            trust.verify_chain(der, (cca,), CARDHOLDER, CertificateUsage.SIGNATURE, wall())
        assert refused.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    finally:
        store.close()
