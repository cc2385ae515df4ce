"""``setpay wallet purchase`` refuses an amount no purchase could have before PInit leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.merchant.records import Money
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory

EUR = 978
LID_M = b"amount-check"


@pytest.mark.parametrize(
    ("name", "given", "says"),
    [
        # An amount out of 1 to the ledger's largest is a usage error (exit 2) before the
        # wallet is opened: tests/cli/test_order_card_numbers.py.
        ("decimals", ["--amount", "120", "--exp10", "3"], "amount exponent must be 2"),
    ],
)
def test_a_bad_amount_reaches_no_merchant(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    given: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    # One bank serves the session, and its Merchant CA registers a merchant id once.
    merchant = make_merchant(f"m-amount-{name}")
    merchant.store.add_offer(LID_M, b"a lamp", Money(EUR, 120), "setpay")
    wallet = make_wallet(merchant)
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase",
            "--lid-m", LID_M.hex(), "--description", "a lamp", *given]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    assert merchant.store.orders() == []
    assert err.startswith(f"setpay wallet: {says}") and "Traceback" not in err
    assert not wallet.config.purchases_file.exists()


def test_a_bad_amount_in_an_initiation_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused while reading the file: before any wallet file or passphrase is touched."""
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps({"lid_m": "00", "description": "d", "currency": EUR, "amount": 0}))
    argv = ["wallet", "--dir", str(tmp_path / "no-wallet"), "purchase", "--initiation", str(path)]
    status, _, err = run_cli(argv, capsys)
    assert status == 1 and err == f"setpay wallet: {path}: amount must be positive\n"
