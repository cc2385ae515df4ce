"""A CA of the EC bank's keys on a ca.db of the test's own, its clock set by the test: for
the tests of a CA's standing (``gateway.ca.standing``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.ca import CertificateAuthority
from gateway.ca.publishing import record_certificate
from setcore.credentials import Credentials
from setcore.freshness import now_ms
from setcore.pki.issuance import issue_ca_key_exchange, kem_for

from .conftest import Bank, serving
from .revocation_support import authority_keys, bank_trust, new_ca_db


@dataclass
class Clock:
    """The CA's clock (ms): now, or set by the test."""

    at_ms: int | None = None

    def __call__(self) -> int:
        return now_ms() if self.at_ms is None else self.at_ms


def kex_of(credentials: Credentials) -> bytes:
    """The key-exchange certificate of a CA's credentials."""
    assert credentials.key_exchange_cert is not None
    return credentials.key_exchange_cert


@contextmanager
def own_ca(
    ec_bank: Bank, path: Path, *, kex_lifetime: timedelta | None = None
) -> Iterator[tuple[Bank, Clock]]:
    """A CA of the EC bank's keys on a ca.db of its own that records the CAs'
    certificates (so they can be revoked there), served on port 0; with
    ``kex_lifetime``, the Cardholder CA's key-exchange certificate re-issued to last that
    long, as ``setpay init`` issued it before (a year)."""
    store = new_ca_db(path, ec_bank.pki)
    keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
    at = datetime.now(UTC)
    if kex_lifetime is not None:
        cca = keys.cardholder
        kex_key = cca.credentials.key_exchange_key
        assert kex_key is not None
        der = issue_ca_key_exchange(
            cca.issuing, kex_key.public_key, kem=kem_for(kex_key), lifetime=kex_lifetime
        )
        credentials = replace(cca.credentials, key_exchange_cert=der)
        keys = replace(keys, cardholder=replace(cca, credentials=credentials))
    with store.write() as tx:
        for side in keys.sides:
            record_certificate(tx, side.credentials.signature_cert, keys.root, at)
            record_certificate(tx, kex_of(side.credentials), side.issuing, at)
    clock = Clock()
    try:
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), ec_bank.issuer, clock=clock)
        with serving(ca) as stub:
            yield replace(ec_bank, ca=ca, stub=stub), clock
    finally:
        store.close()
