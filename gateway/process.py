"""Assemble a running bank from its configuration: keys, ledger, CA, services, server.

Everything that opens a key backend session or a gRPC server happens here, so a worker
process can call it after fork (DESIGN.md 5.4: sessions and gRPC are never inherited).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from gateway.bank import Bank
from gateway.ca.authority import CertificateAuthority
from gateway.ca.servicer import CertificateAuthorityServicer
from gateway.ca.store import CaStore
from gateway.config import BankConfig
from gateway.issuer import LedgerDirectory, open_ledger
from gateway.ledger import Ledger
from gateway.provisioning import BankPki, load_bank_pki, open_ca_store
from gateway.server import HealthMonitor, ServerLimits, ServiceBinding, TlsConfig, create_server
from gateway.servicer import PaymentGatewayServicer
from setcore.authorization import TokenKey

log = logging.getLogger("setpay.gateway")


@dataclass
class RunningBank:
    """A bank serving on a port, with what must be closed when it stops."""

    server: grpc.Server
    port: int
    health: HealthMonitor
    bank: Bank
    pki: BankPki
    ledger: Ledger
    authority: CertificateAuthority
    ca_store: CaStore

    def stop(self, grace: float | None) -> None:
        """NOT_SERVING, let in-flight calls finish within ``grace``, close sessions."""
        self.health.stop()
        self.server.stop(grace).wait()
        self.ca_store.close()
        self.ledger.close()
        self.pki.close()


def tls_config(config: BankConfig) -> TlsConfig | None:
    """The server's TLS material, or None for an insecure (local experiment) server."""
    if config.insecure or config.tls is None:
        return None
    return TlsConfig(
        certificate_chain=config.tls.cert.read_bytes(),
        private_key=config.tls.key.read_bytes(),
        client_ca=config.tls.client_ca.read_bytes(),
    )


def start_bank(
    config: BankConfig, *, listen: str | None = None, reuse_port: bool = False
) -> RunningBank:
    """Open keys, ledger and CA; serve PaymentGateway and CertificateAuthority on one port."""
    pki = load_bank_pki(config)
    ledger = open_ledger(config)
    try:
        bank = Bank(
            credentials=pki.gateway,
            trust=pki.trust,
            token_key=TokenKey.from_handle(pki.backend, pki.token_key),
            ledger=ledger,
            gateway_chain=pki.gateway.chain,
        )
        ca_store = open_ca_store(config)
        authority = CertificateAuthority(
            pki.authority_keys(), ca_store, pki.trust, LedgerDirectory(ledger)
        )
        secure = not config.insecure
        bindings = [
            ServiceBinding(
                "PaymentGatewayService",
                PaymentGatewayServicer(bank),
                require_client_certificate=secure,
            ),
            ServiceBinding("CertificateAuthorityService", CertificateAuthorityServicer(authority)),
        ]
        limits = ServerLimits(
            max_message_bytes=config.max_message_bytes,
            max_concurrent_rpcs=config.max_concurrent_rpcs,
            threads=config.threads,
            reuse_port=reuse_port,
        )
        server, port, health = create_server(
            bindings,
            listen or config.listen,
            limits,
            tls=tls_config(config),
            reflection_enabled=config.reflection,
            probes=(pki.backend.check_health, ledger.check_health),
        )
    except BaseException:
        ledger.close()
        pki.close()
        raise
    log.info("bank serving on port %d (%s)", port, "TLS" if secure else "INSECURE plaintext")
    return RunningBank(server, port, health, bank, pki, ledger, authority, ca_store)
