"""The merchants' settlement currency comes from the bank's configuration: accounts the CA
opens are in the currency of the bank's cards, so their authorizations are approved."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.config import ConfigError, load
from gateway.issuer import LedgerDirectory
from gateway.ledger import Authorized, Decline, Declined, Ledger
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, USD, Bank

# An insecure bank needs no TLS files: the smallest configuration that loads.
MINIMAL = "[gateway]\ninsecure = true\n"


def _config_file(tmp_path: Path, ledger_table: str = "") -> Path:
    path = tmp_path / "setpay.toml"
    path.write_text(MINIMAL + ledger_table)
    return path


def test_the_settlement_currency_is_eur_unless_configured(tmp_path: Path) -> None:
    assert load(_config_file(tmp_path), env={}).settlement_currency == EUR
    configured = _config_file(tmp_path, "[ledger]\nsettlement_currency = 840\n")
    assert load(configured, env={}).settlement_currency == USD


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("999", "ISO 4217 numeric code of a currency with a minor unit"),  # XXX, no currency
        ("0", "ISO 4217 numeric code of a currency with a minor unit"),
        ("1000", "ISO 4217 numeric code of a currency with a minor unit"),
        ('"USD"', "must be int, not str"),
    ],
)
def test_a_settlement_currency_that_is_no_currency_is_refused(
    tmp_path: Path, value: str, says: str
) -> None:
    path = _config_file(tmp_path, f"[ledger]\nsettlement_currency = {value}\n")
    with pytest.raises(ConfigError, match=r"ledger\.settlement_currency") as refused:
        load(path, env={})
    assert says in str(refused.value)


def test_merchants_registered_by_a_dollar_bank_take_its_dollar_cards(ledger: Ledger) -> None:
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, USD)
    directory = LedgerDirectory(ledger, USD)
    directory.merchant_registered("m-dollar", "Dollar Shop")
    assert ledger.merchant_account("m-dollar").currency == USD
    bank = Bank(ledger)
    assert isinstance(bank.authorize(PAN_A, 500, currency=USD, merchant="m-dollar"), Authorized)


def test_an_account_opened_before_in_another_currency_is_said_not_changed(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, USD)
    LedgerDirectory(ledger).merchant_registered("m-old", "Old Shop")  # EUR, as before
    with caplog.at_level(logging.WARNING, logger="setpay.issuer"):
        LedgerDirectory(ledger, USD).merchant_registered("m-old", "Old Shop")
    assert ledger.merchant_account("m-old").currency == EUR
    assert "m-old" in caplog.text and "CURRENCY_MISMATCH" in caplog.text
    bank = Bank(ledger)
    declined = bank.authorize(PAN_A, 500, currency=USD, merchant="m-old")
    assert declined == Declined(Decline.CURRENCY_MISMATCH)
