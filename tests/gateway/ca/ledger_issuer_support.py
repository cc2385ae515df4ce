"""The bank's CA asking a real issuer ledger, for the CA tests whose issuer is the bank's
own ``gateway.issuer.LedgerDirectory`` rather than the in-memory ``DictIssuer``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger

from .conftest import Bank, serving


@contextmanager
def ca_asking(bank: Bank, ledger: Ledger) -> Iterator[Bank]:
    """The bank's CA (its keys, ca.db and trust store) asking ``ledger``, served on port 0."""
    store = open_ca_store(bank.config)
    try:
        ca = CertificateAuthority(
            bank.pki.authority_keys(), store, bank.pki.trust, LedgerDirectory(ledger)
        )
        with serving(ca) as stub:
            yield replace(bank, ca=ca, stub=stub)
    finally:
        store.close()
