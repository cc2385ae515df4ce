"""``setpay wallet purchase`` with an incomplete initiation, on a registered wallet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory


def test_an_initiation_without_description_is_named(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    wallet = make_wallet(make_merchant("m-initiation"))
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps({"lid_m": "00", "currency": 978, "amount": 1}))
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase", "--initiation", str(path)]
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: {path} has no description: not a complete SET Initiation\n"
