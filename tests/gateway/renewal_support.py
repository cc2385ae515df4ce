"""What the tests of the gateway's key renewal share: the key versions its backend holds
(fixed ports for a bank stopped and started again come from ``tests.ports``)."""

from __future__ import annotations

from gateway.bank_pki import bank_keys_uri
from gateway.config import BankConfig
from hsm.uri import open_backend


def key_versions(config: BankConfig) -> set[tuple[str, int]]:
    """Every (label, version) in the bank's key backend."""
    backend = open_backend(bank_keys_uri(config))
    try:
        return {(k.label, k.version) for k in backend.list_keys()}
    finally:
        backend.close()
