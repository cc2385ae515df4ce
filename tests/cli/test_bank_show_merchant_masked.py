"""``setpay bank show-merchant`` given a card number by mistake does not print it whole.

The ledger's refusal repeats the merchant ID it was given; a card number typed there was
printed to the terminal (and whatever records it) in full. It is masked as every card is
shown, while a merchant ID of a few digits is still named as given.
"""

from __future__ import annotations

import re

import pytest

from gateway.provisioning import InitResult, init_bank
from setcore.pan import mask_pan
from tests.cards import card
from tests.cli.command_support import run_bank

TYPED = card("411111", 7)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-show-merchant") / "bank", env={})


def test_a_card_number_given_as_merchant_id_is_masked(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(made.directory / "setpay.toml")]
    code, out, err = run_bank([*config, "show-merchant", "--merchant-id", TYPED], capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay bank: merchant {mask_pan(TYPED)} has no account\n"
    assert re.search(r"\d{13}", err) is None


def test_a_numeric_merchant_id_is_named_whole(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(made.directory / "setpay.toml")]
    code, out, err = run_bank([*config, "show-merchant", "--merchant-id", "123456789012"], capsys)
    assert (code, out) == (1, "")
    assert err == "setpay bank: merchant 123456789012 has no account\n"
