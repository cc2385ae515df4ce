"""The demo's merchant.toml names the bank's settlement currency as ``merchant.currency``.

Without it the merchant's orders (``setpay merchant orders new`` in a directory ``--dir``
keeps) were in the merchant's default, EUR, whatever the bank settles in: the Merchant
CA opens the merchant's account in the bank's ``[ledger] settlement_currency``, and an
order in another currency is declined CURRENCY_MISMATCH. The demo's bank is init's, in
euros, so the two matched only by that default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.demo import MERCHANT_ID, Demo
from cli.story import Story
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import Money
from gateway.config import BankConfig
from gateway.config import load as load_bank_config

USD = 840


@contextmanager
def _merchant_of_a_demo(base: Path, *, pay: int = 0) -> Iterator[int]:
    """Run the demo's bank and merchant steps in ``base``, then stop what they started;
    the currency of the merchant's settlement account, as the Merchant CA opened it.
    ``pay``: first, the demo's wallet buys for that many minor units (authorized in full,
    or the demo fails), and the card's account and the merchant's order must be in that
    currency."""
    demo = Demo(base, "ec", None, Story(json_mode=True))
    try:
        running, card = demo.bank()
        wallet = demo.wallet(running, card) if pay else None
        merchant = demo.merchant(running)
        if wallet is not None:
            record = demo.purchase(wallet, merchant, b"a postcard", pay)
            held = running.ledger.find_card_account(card[0].reveal())
            assert (held.currency, held.pending) == (demo.settlement_currency, pay)
            order = merchant.store.order(bytes.fromhex(record.xid))
            assert order.amount == Money(demo.settlement_currency, pay)
        yield running.ledger.merchant_account(MERCHANT_ID).currency
    finally:
        demo.stops.begin_cleanup()
        demo.stack.close()


def _written_currency(base: Path) -> object:
    """``merchant.currency`` as merchant.toml holds it (None: not written)."""
    with (base / "merchant" / "merchant.toml").open("rb") as handle:
        return tomllib.load(handle)["merchant"].get("currency")


def test_the_demo_s_merchant_is_given_the_bank_s_currency(tmp_path: Path) -> None:
    with _merchant_of_a_demo(tmp_path) as account_currency:
        settlement = load_bank_config(tmp_path / "bank" / "setpay.toml", env={})
        assert _written_currency(tmp_path) == settlement.settlement_currency == account_currency
        assert load_merchant_config(tmp_path / "merchant", env={}).currency == account_currency


def test_a_bank_settling_in_another_currency_gives_the_merchant_that_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The currency comes from the bank's configuration, not from the two defaults'
    being the same."""

    def in_dollars(path: Path) -> BankConfig:
        return dataclasses.replace(load_bank_config(path), settlement_currency=USD)

    # The demo loads its bank's configuration by this name.
    monkeypatch.setattr("cli.demo.load_bank_config", in_dollars)
    with _merchant_of_a_demo(tmp_path, pay=1234) as account_currency:
        assert account_currency == USD
        assert _written_currency(tmp_path) == USD
        assert load_merchant_config(tmp_path / "merchant", env={}).currency == USD
