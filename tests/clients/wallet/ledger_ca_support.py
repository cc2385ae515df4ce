"""A Cardholder CA that asks the bank's own ledger, which knows enrolment codes (the
bank's own CA asks a test desk that takes none): the enrolment code tests' CA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority, CertificateAuthorityServicer
from gateway.issuer import LedgerDirectory
from gateway.server import ServerLimits, ServiceBinding, TlsConfig, create_server
from tests.clients.bank_support import RunningBank

# The CA's server: small, explicit (one wallet calls it at a time).
LIMITS = ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=8, threads=2)


@contextmanager
def ledger_asking_ca(bank: RunningBank, tls: TlsConfig | None = None) -> Iterator[int]:
    """That CA over the bank's keys and ca.db, served on port 0 (with ``tls``, over TLS);
    its port."""
    store = open_ca_store(bank.config)
    ca = CertificateAuthority(
        bank.pki.authority_keys(), store, bank.pki.trust, LedgerDirectory(bank.ledger)
    )
    binding = ServiceBinding("CertificateAuthorityService", CertificateAuthorityServicer(ca))
    server, port, health = create_server([binding], "127.0.0.1:0", LIMITS, tls=tls)
    try:
        yield port
    finally:
        health.stop()
        server.stop(None)
        store.close()
