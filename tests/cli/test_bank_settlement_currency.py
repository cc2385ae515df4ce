"""``setpay bank open-account`` and ``open-merchant`` without ``--currency`` open accounts in
the bank's ``[ledger] settlement_currency``: the currency its CA opens merchants' accounts
in, so that a card the bank opens can pay them (an authorization whose card and merchant
accounts differ in currency is declined CURRENCY_MISMATCH)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load
from gateway.issuer import LedgerDirectory
from gateway.ledger import Ledger
from gateway.ledger.outcomes import Authorized
from gateway.provisioning import InitResult, init_bank
from tests.cli.command_support import run_bank
from tests.gateway.ledger.ledger_support import Bank

USD = 840
EUR = 978
EXPIRY = "203012"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A bank whose cards and merchants are in US dollars."""
    made = init_bank(tmp_path_factory.mktemp("bank-usd") / "bank", env={})
    config = made.directory / "setpay.toml"
    text = config.read_text()
    assert text.count("[ledger]\n") == 1
    config.write_text(text.replace("[ledger]\n", f"[ledger]\nsettlement_currency = {USD}\n"))
    assert load(config).settlement_currency == USD
    return made


def _config(made: InitResult) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml")]


def _open_card(
    made: InitResult, out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, str]:
    argv = [*_config(made), "open-account", "--limit", "5000", "--expiry", EXPIRY,
            "--card-out", str(out), *extra]  # fmt: skip
    code, stdout, err = run_bank(argv, capsys)
    assert (code, err) == (0, "")
    card: dict[str, str] = json.loads(out.read_text())
    assert card["pan"] not in stdout
    return card


def test_a_merchant_is_enrolled_in_the_settlement_currency(
    made: InitResult, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    """It used to be opened in euros: the CA keeps an account it finds, so every
    authorization of the merchant was declined, for good."""
    argv = [*_config(made), "open-merchant", "--merchant-id", "shop-usd"]
    code, out, err = run_bank(argv, capsys)
    assert (code, err) == (0, "")
    assert out.endswith(f"({USD})\n")
    assert ledger.merchant_account("shop-usd").currency == USD


def test_a_card_opened_by_default_pays_a_merchant_the_ca_registered(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    card = _open_card(made, tmp_path / "card.json", capsys)
    assert ledger.card_account(card["account"]).currency == USD
    # The merchant's account as the Merchant CA opens it at registration
    # (``gateway.process``: in the settlement currency).
    LedgerDirectory(ledger, USD).merchant_registered("shop-registered", "Shop")
    outcome = Bank(ledger).authorize(
        card["pan"], 1000, currency=USD, merchant="shop-registered", pan_expiry=EXPIRY
    )
    assert isinstance(outcome, Authorized), outcome


def test_a_currency_given_is_the_accounts(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    card = _open_card(made, tmp_path / "card.json", capsys, "--currency", str(EUR))
    assert ledger.card_account(card["account"]).currency == EUR
    argv = [*_config(made), "open-merchant", "--merchant-id", "shop-eur", "--currency", str(EUR)]
    code, out, err = run_bank(argv, capsys)
    assert (code, err) == (0, "") and out.endswith(f"({EUR})\n")
    assert ledger.merchant_account("shop-eur").currency == EUR
