"""What the tests of the gateway's key renewal share: the key versions its backend holds,
a stopped bank made at a given time and what a renewal could change of it, its Payment
Gateway CA's end, a certificate revoked (fixed ports for a bank stopped and started again
come from ``tests.ports``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from gateway.bank_pki import BankPki, bank_keys_uri, load_bank_pki, open_ca_store
from gateway.ca.publishing import revoke
from gateway.config import BankConfig, load
from gateway.provisioning import init_bank
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate
from tests.ports import free_port

# How much of the Payment Gateway CA's life a renewal needs left
# (``gateway.renewal_issuer.ISSUER_MUST_LAST``).
A_DAY = timedelta(days=1)


def key_versions(config: BankConfig) -> set[tuple[str, int]]:
    """Every (label, version) in the bank's key backend."""
    backend = open_backend(bank_keys_uri(config))
    try:
        return {(k.label, k.version) for k in backend.list_keys()}
    finally:
        backend.close()


def stopped_bank(directory: Path, made_at: datetime) -> BankConfig:
    """A stopped bank made at ``made_at``, on ports nobody holds."""
    init_bank(directory, profile="ec", env={}, at=made_at)
    ports = {
        "SETPAY_LISTEN": f"127.0.0.1:{free_port()}",
        "SETPAY_CA_LISTEN": f"127.0.0.1:{free_port()}",
    }
    return load(directory / "setpay.toml", env=ports)


def renewal_state(config: BankConfig) -> tuple[set[tuple[str, int]], dict[str, bytes], int]:
    """What a renewal could change: key versions, certificate files, ca.db's records."""
    files = {p.name: p.read_bytes() for p in config.path(config.certs_dir).iterdir()}
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            recorded = len(list(tx.listed_certificates()))
    finally:
        store.close()
    return key_versions(config), files, recorded


def pca_end(config: BankConfig) -> datetime:
    """When the bank's Payment Gateway CA's certificate ends (also on a bank whose start
    refuses its gateway certificates)."""
    pki = load_bank_pki(config, judge_presented=False)
    try:
        return load_certificate(pki.pca.signature_cert).not_valid_after_utc
    finally:
        pki.close()


def revoke_certificate(
    config: BankConfig, certificate: Callable[[BankPki], bytes], *, judge_presented: bool = True
) -> None:
    """Revoke, in the bank's CA store, the certificate ``certificate`` picks of its PKI
    (loaded with ``judge_presented`` as the bank's start would, or not)."""
    pki = load_bank_pki(config, judge_presented=judge_presented)
    try:
        store = open_ca_store(config)
        try:
            revoke(store, pki.authority_keys(), thumb=thumbprint(certificate(pki)))
        finally:
            store.close()
    finally:
        pki.close()
