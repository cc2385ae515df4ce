"""A CA whose own certificate or key-exchange certificate is revoked or expired answers no
registration (gRPC UNAVAILABLE), and its log line says which and what to do.

It used to go on answering and issuing: after ``setpay ca revoke`` of the Cardholder CA
itself, wallets refused its every answer, yet it kept certifying keys; a year after
``setpay init`` its key-exchange certificate had ended and registration failed with no
word of why. Real parts: the EC bank's keys, a ca.db of the test's own holding the CAs'
certificates, the CA served by a gRPC server on port 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from gateway.ca import CertificateAuthority
from gateway.ca import servicer as ca_servicer
from gateway.ca.publishing import record_certificate
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.freshness import now_ms
from setcore.pki.issuance import END_ENTITY_LIFETIME, issue_ca_key_exchange, kem_for
from setcore.registration_cardholder import build_card_c_init_request
from setcore.registration_merchant import MerchantIdentity

from .conftest import Bank, serving
from .flows import start_merchant
from .revocation_support import authority_keys, bank_trust, new_ca_db


@dataclass
class Clock:
    """The CA's clock (ms): now, or set by the test."""

    at_ms: int | None = None

    def __call__(self) -> int:
        return now_ms() if self.at_ms is None else self.at_ms


def _kex(credentials: Credentials) -> bytes:
    assert credentials.key_exchange_cert is not None
    return credentials.key_exchange_cert


@contextmanager
def _own_ca(
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
            record_certificate(tx, _kex(side.credentials), side.issuing, at)
    clock = Clock()
    try:
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), ec_bank.issuer, clock=clock)
        with serving(ca) as stub:
            yield replace(ec_bank, ca=ca, stub=stub), clock
    finally:
        store.close()


def _card_c_init(bank: Bank) -> None:
    request, _ = build_card_c_init_request(bank.brand_id, os.urandom(8))
    bank.stub.CardCInit(request)


def _unavailable(call: Callable[[], object], caplog: pytest.LogCaptureFixture) -> str:
    """The refusal ``call`` gets, and the log line that explains it."""
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger=ca_servicer.__name__),
        pytest.raises(grpc.RpcError) as caught,
    ):
        call()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "certificate authority certificate unavailable"
    return caplog.text


SHOP = MerchantIdentity("standing-shop-1", "Standing Shop Ltd")


def test_a_ca_whose_certificate_is_revoked_answers_no_registration(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _own_ca(ec_bank, tmp_path / "ca.db") as (bank, _):
        _card_c_init(bank)  # answers while it stands
        bank.ca.revoke(thumb=bank.ca.keys.cardholder.issuing.thumbprint)
        logged = _unavailable(lambda: _card_c_init(bank), caplog)
        assert "Cardholder CA: its certificate is revoked" in logged
        start_merchant(bank, SHOP)  # the Merchant CA still stands

        bank.ca.revoke(thumb=bank.ca.keys.merchant.key_exchange_thumb)
        logged = _unavailable(lambda: start_merchant(bank, SHOP), caplog)
        assert "Merchant CA: its key-exchange certificate is revoked" in logged


def test_a_ca_whose_key_exchange_certificate_expired_says_what_it_needs(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _own_ca(ec_bank, tmp_path / "ca.db", kex_lifetime=END_ENTITY_LIFETIME) as (bank, clock):
        kex_der = _kex(bank.ca.keys.cardholder.credentials)
        end = x509.load_der_x509_certificate(kex_der).not_valid_after_utc
        clock.at_ms = int(end.timestamp() * 1000)
        _card_c_init(bank)  # its last moment
        clock.at_ms += 1000
        logged = _unavailable(lambda: _card_c_init(bank), caplog)
        assert "its key-exchange certificate expired at" in logged
        assert "the CA needs a new key-exchange key and certificate" in logged
        assert thumbprint(kex_der).hex() not in logged
