"""``setpay wallet purchase`` from flags assumes EUR when ``--currency`` is not given, and
says so.

SET's PInitRes names no amount: the order's terms (description, amount, currency) reach
the wallet out of band, in the merchant's initiation, and the merchant only compares a
digest of them with its own (HOD). So the wallet cannot learn the currency from the
offer, and the flags' default (978) stays; but an order in another currency was refused
with DIGEST_MISMATCH alone, nothing saying that a currency was assumed, nor where the
terms are written. The help names the default and the initiation file, and the refusal
says which terms may differ, that 978 was assumed, and to buy from the initiation file.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cli.main import main
from clients.merchant.records import Money
from clients.merchant.runtime import Merchant
from setcore.freshness import new_id
from tests.clients.bank_support import EUR
from tests.clients.conftest import MerchantFactory, WalletFactory

from .conftest import Setpay

USD = 840
DESCRIPTION = "a lamp"


def _offer(merchant: Merchant, currency: int) -> str:
    """An order the merchant offers in ``currency``: its LID-M, hex, never all digits
    (``--lid-m`` refuses one that could be a card number: 1 draw in ~18,000)."""
    lid_m = new_id()[:8]
    while lid_m.hex().isdigit():
        lid_m = new_id()[:8]
    merchant.store.add_offer(lid_m, DESCRIPTION.encode(), Money(currency, 1250), "setpay")
    return lid_m.hex()


Buy = Callable[..., tuple[int, str, str]]


@pytest.fixture
def buy(make_merchant: MerchantFactory, make_wallet: WalletFactory, setpay: Setpay) -> Buy:
    """``buy(merchant_id, currency, *extra)``: a new merchant offers an order in
    ``currency``, and a new wallet of its buys it from flags (``--lid-m``,
    ``--description``, ``--amount``, then ``extra``); (status, stdout, stderr)."""

    def run(merchant_id: str, currency: int, *extra: str) -> tuple[int, str, str]:
        merchant = make_merchant(merchant_id)
        wallet = make_wallet(merchant)
        return setpay(
            ["wallet", "--dir", str(wallet.config.base_dir), "purchase", "--lid-m",
             _offer(merchant, currency), "--description", DESCRIPTION, "--amount", "1250",
             *extra]
        )  # fmt: skip

    return run


def test_an_order_in_another_currency_says_978_was_assumed(buy: Buy) -> None:
    status, out, err = buy("m-usd-flags", USD)
    assert (status, out) == (1, "")
    assert "ERROR_CODE_DIGEST_MISMATCH" in err
    assert "the merchant's order is not the one given" in err
    assert "--currency was not given: 978 (EUR) was assumed" in err
    assert "buy it with the merchant's initiation file (--initiation)" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_currency_given_that_differs_is_not_said_to_be_assumed(buy: Buy) -> None:
    status, out, err = buy("m-eur-flags", EUR, "--currency", str(USD))
    assert (status, out) == (1, "")
    assert "the merchant's order is not the one given" in err
    assert "description, amount or currency" in err and "assumed" not in err


def test_the_default_buys_an_order_in_euros(buy: Buy) -> None:
    status, out, err = buy("m-eur-default", EUR)
    assert (status, err) == (0, "")
    assert "AUTHORIZATION_PERFORMED" in out and "APPROVED" in out


def test_the_help_names_the_default_and_where_the_currency_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["wallet", "purchase", "--help"])
    assert stopped.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--currency CURRENCY ISO 4217 numeric code of the merchant's order" in shown
    assert "default 978 (EUR)" in shown and "--initiation" in shown
