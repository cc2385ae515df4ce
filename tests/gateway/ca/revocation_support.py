"""Revocation data that needs refreshing while the parts a refresh uses are away.

Everything is the bank's own: its keys (through ``TokenGone``, the one test double, which
fails ``sign`` as a removed token does), a ca.db of its own made by ``publishing``, a
trust store holding the bank's CA certificates. ``WallClock`` moves the watcher's idea of
the date, so that the revocation data becomes due, then lapses, without waiting a day.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.bank_pki import BankPki
from gateway.ca import AuthorityKeys, CaStore, publish_initial
from gateway.ca.publishing import REFRESH_FRACTION, publish
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import TransientBackendError
from setcore.pki.bci import BCI_LIFETIME
from setcore.pki.truststore import TrustStore
from tests.hsm.forwarding import ForwardingBackend

# Past this age a BCI is due for re-publishing and still current for an hour or more.
DUE_AGE = BCI_LIFETIME * (1 - REFRESH_FRACTION) + timedelta(hours=1)
# Past this age a BCI is no longer current.
LAPSED_AGE = BCI_LIFETIME + timedelta(hours=1)


class TokenGone(ForwardingBackend):
    """The bank's key backend, whose ``sign`` fails as a removed token does while ``gone``."""

    name = "token-gone"

    def __init__(self, inner: KeyBackend, *, gone: bool = True) -> None:
        super().__init__(inner)
        self.gone = gone
        self.failed_signs = 0

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        if self.gone:
            self.failed_signs += 1
            raise TransientBackendError("token removed")
        return self.inner.sign(key, data)


class WallClock:
    """A wall clock that runs with the real one, ``ahead`` of it."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def authority_keys(pki: BankPki, backend: KeyBackend) -> AuthorityKeys:
    """The bank's CA keys, used through ``backend`` to issue (certificates, CRLs, BCIs)."""
    return AuthorityKeys.from_credentials(
        backend, pki.root_key, pki.root_der, pki.cca, pki.mca, pki.pca
    )


def bank_trust(pki: BankPki) -> TrustStore:
    """A trust store as the bank makes one (root pinned, its CAs known), no BCI yet."""
    trust = TrustStore(pki.root_der)
    known = [c.signature_cert for c in (pki.cca, pki.mca, pki.pca, pki.gateway)]
    known += [c.key_exchange_cert for c in (pki.cca, pki.mca, pki.pca, pki.gateway)]
    trust.add_certificates(der for der in known if der)
    return trust


def new_ca_db(path: Path, pki: BankPki, *, age: timedelta = timedelta(0)) -> CaStore:
    """A ca.db of its own whose first CRLs and BCI were published ``age`` ago."""
    store = CaStore.open(path, create=True)
    publish_initial(store, authority_keys(pki, pki.backend), at=datetime.now(UTC) - age)
    return store


def publish_dated(store: CaStore, pki: BankPki, age: timedelta) -> None:
    """A new BCI (next sequence number) as if published ``age`` ago."""
    with store.write() as tx:
        publish(tx, authority_keys(pki, pki.backend), (), datetime.now(UTC) - age)


# ca.db's busy timeout where a test waits it out (``gateway.ca.store.BUSY_TIMEOUT_MS``
# patched before the store opens): long enough for SQLite's busy handler to wait at least
# once, short enough that the wait costs the test nothing.
SHORT_BUSY_TIMEOUT_MS = 200


@contextmanager
def locked(store: CaStore) -> Iterator[None]:
    """ca.db's write lock held by another connection (as ``setpay ca revoke`` holds it)."""
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()
