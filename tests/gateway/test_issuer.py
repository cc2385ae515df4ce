"""``LedgerDirectory``: the issuer ledger's answers to the CA, and its outages translated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ca import IssuerUnavailable
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore, StoreUnavailable
from setcore.pan import PAN
from setpay.v1 import registration_pb2

from .actors import EUR, EXPIRY, make_pan

S = registration_pb2


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    keys = LedgerKeys(data_key=os.urandom(32), index_key=os.urandom(32))
    opened = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), keys)
    try:
        yield opened
    finally:
        opened.close()


def test_the_issuers_answers(ledger: Ledger) -> None:
    card, blocked, unknown = make_pan(1), make_pan(2), make_pan(3)
    ledger.open_card_account(card, EXPIRY, 100_000, EUR)
    account = ledger.open_card_account(blocked, EXPIRY, 100_000, EUR)
    ledger.block_card_account(account.account_id)
    directory = LedgerDirectory(ledger)
    assert directory.check_card(PAN(card), EXPIRY) == S.CERT_STATUS_CODE_REQUEST_COMPLETE
    assert directory.check_card(PAN(card), "203101") == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
    assert directory.check_card(PAN(blocked), EXPIRY) == S.CERT_STATUS_CODE_REJECTED_BY_ISSUER
    assert directory.check_card(PAN(unknown), EXPIRY) == S.CERT_STATUS_CODE_UNKNOWN_ACCOUNT
    directory.merchant_registered("m-issuer-1", "Issuer Test Ltd")
    directory.merchant_registered("m-issuer-1", "Issuer Test Ltd")  # a renewal: idempotent
    assert ledger.merchant_account("m-issuer-1").currency == EUR


def test_the_ledger_away_is_the_issuer_unavailable(ledger: Ledger) -> None:
    """The ledger's StoreUnavailable becomes the CA's IssuerUnavailable (UNAVAILABLE at
    the CA), chained; never an exception the CA would answer as a refusal."""
    card = make_pan(4)
    ledger.open_card_account(card, EXPIRY, 100_000, EUR)
    ledger.close()
    directory = LedgerDirectory(ledger)
    with pytest.raises(IssuerUnavailable) as looked_up:
        directory.check_card(PAN(card), EXPIRY)
    assert isinstance(looked_up.value.__cause__, StoreUnavailable)
    with pytest.raises(IssuerUnavailable) as booked:
        directory.merchant_registered("m-issuer-2", "Issuer Test Ltd")
    assert isinstance(booked.value.__cause__, StoreUnavailable)


def test_a_merchant_id_with_an_account_is_the_account_holder_s(ledger: Ledger) -> None:
    directory = LedgerDirectory(ledger)
    # No account yet: any initial registration may have the ID (and opens the account).
    assert directory.may_register_merchant("m-issuer-3", None)
    directory.merchant_registered("m-issuer-3", "Issuer Test Ltd")
    held = ledger.merchant_account("m-issuer-3").account_id
    # Then only a request naming that account: not none, not another, not a near miss.
    assert not directory.may_register_merchant("m-issuer-3", None)
    for other in ("acct-of-someone-else", held[:-1], held + " ", held.upper()):
        assert not directory.may_register_merchant("m-issuer-3", other), other
    assert directory.may_register_merchant("m-issuer-3", held)
    ledger.close()
    with pytest.raises(IssuerUnavailable) as looked_up:
        directory.may_register_merchant("m-issuer-3", held)
    assert isinstance(looked_up.value.__cause__, StoreUnavailable)
