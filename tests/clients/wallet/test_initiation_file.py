"""``setpay wallet purchase`` with an incomplete initiation, on a registered wallet."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clients.conftest import MerchantFactory, WalletFactory

from .conftest import Setpay


def test_an_initiation_without_description_is_named(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    tmp_path: Path,
    setpay: Setpay,
) -> None:
    wallet = make_wallet(make_merchant("m-initiation"))
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps({"lid_m": "00", "currency": 978, "amount": 1}))
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase", "--initiation", str(path)]
    status, out, err = setpay(argv)
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: {path} has no description: not a complete SET Initiation\n"


def test_an_initiation_for_another_brand_is_refused_before_the_passphrase(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    tmp_path: Path,
    setpay: Setpay,
) -> None:
    wallet = make_wallet(make_merchant("m-initiation-brand"))
    path = tmp_path / "initiation.json"
    order = {"lid_m": "00", "description": "a book", "currency": 978, "amount": 1}
    path.write_text(json.dumps({**order, "brand": "otherbrand", "merchant": "[::]:1"}))
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase", "--initiation", str(path)]
    status, out, err = setpay(argv)
    assert (status, out) == (1, "")
    assert "the order is for brand 'otherbrand'" in err
