"""The bank's CA asking a real issuer ledger, for the CA tests whose issuer is the bank's
own ``gateway.issuer.LedgerDirectory`` rather than the in-memory ``DictIssuer``; or, for a
CA restarted over the same ca.db, any issuer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca.issuer import IssuerDirectory
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger

from .conftest import Bank, serving


@contextmanager
def ca_asking(bank: Bank, issuer: Ledger | IssuerDirectory) -> Iterator[Bank]:
    """Another CA over the bank's keys, ca.db and trust store (a restart, or another
    worker), asking ``issuer`` (a ledger through the bank's ``LedgerDirectory``), served
    on port 0."""
    directory = LedgerDirectory(issuer) if isinstance(issuer, Ledger) else issuer
    store = open_ca_store(bank.config)
    try:
        ca = CertificateAuthority(bank.pki.authority_keys(), store, bank.pki.trust, directory)
        with serving(ca) as stub:
            yield replace(bank, ca=ca, stub=stub)
    finally:
        store.close()
