"""A revoked certificate leaves its CA's CRL once it has been expired a while.

Every CRL listed every serial its CA ever revoked, and every CA answer to a requester
without the BCI's thumbprint staples every CRL: at ~39 bytes an entry, some 27,000
revocations pushed every first answer past the 1 MiB message limit and stopped new
registrations. A certificate expired longer than ``EXPIRED_CRL_GRACE`` is refused as
expired by every verifier, so it leaves (RFC 5280 5.1.2.6); a live one stays, and so does
one expired only lately. Real parts: the bank's keys, certificates of the Cardholder CA
and a ca.db of the test's own.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.ca import publishing
from gateway.ca.keys import AuthorityKeys
from gateway.ca.store import CaStore
from setcore.pki.issuance import issue_cardholder

from .conftest import Bank
from .revocation_support import authority_keys, new_ca_db


def _revoked_cardholder(
    store: CaStore, keys: AuthorityKeys, *, issued_ago: timedelta, lifetime: timedelta
) -> int:
    """The serial of a cardholder certificate issued ``issued_ago``, recorded and revoked."""
    ca = keys.cardholder.issuing
    at = datetime.now(UTC) - issued_ago
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = issue_cardholder(
        ca, public, os.urandom(32), datetime.now(UTC) + timedelta(days=900),
        at=at, lifetime=lifetime,
    )  # fmt: skip
    with store.write() as tx:
        publishing.record_certificate(tx, der, ca, at)
    cert, _ = publishing.revoke(
        store, keys, thumb=publishing.describe_certificate(der, ca.thumbprint, at).thumb
    )
    return cert.serial


def _listed(store: CaStore, keys: AuthorityKeys) -> set[int]:
    """The serials the Cardholder CA's current CRL lists."""
    current = publishing.current_revocation(store)
    assert current is not None
    _, data = current
    cca = keys.cardholder.issuing.certificate.subject
    (crl,) = [c for c in map(x509.load_der_x509_crl, data.crls) if c.issuer == cca]
    return {entry.serial_number for entry in crl}


def test_a_revoked_certificate_leaves_the_crl_once_long_expired(
    ec_bank: Bank, tmp_path: Path
) -> None:
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    try:
        long_gone = _revoked_cardholder(  # expired 40 days ago
            store, keys, issued_ago=timedelta(days=60), lifetime=timedelta(days=20)
        )
        lately_gone = _revoked_cardholder(
            store, keys, issued_ago=timedelta(days=3), lifetime=timedelta(days=1)
        )
        live = _revoked_cardholder(
            store, keys, issued_ago=timedelta(0), lifetime=timedelta(days=365)
        )
        listed = _listed(store, keys)
        assert live in listed
        assert lately_gone in listed  # expired within the grace: still listed
        assert long_gone not in listed
        assert timedelta(days=40) > publishing.EXPIRED_CRL_GRACE
        with store.read() as tx:  # ca.db still knows it was revoked
            assert tx.is_revoked(tx.certificates_by_serial(long_gone)[0].thumb)
    finally:
        store.close()
