"""``setpay wallet``: register from the bank's card file, buy from an initiation, show."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clients.merchant.config import AnswerMode
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.pan_scan import files_with_pans, pan_like_runs

from .conftest import Setpay


def _card_file(bank: RunningBank, directory: Path) -> tuple[str, Path]:
    """What ``setpay bank open-account --card-out`` hands the cardholder."""
    pan, expiry = bank.new_card()
    path = directory / "card.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": pan.reveal(), "expiry": expiry, "account": "card-x"}, handle)
    return pan.reveal(), path


def test_register_purchase_inquire_show(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    tmp_path: Path,
    setpay: Setpay,
) -> None:
    merchant = make_merchant("m-cli", AnswerMode.AFTER_AUTHORIZATION)
    wallet_dir = tmp_path / "wallet-cli"
    new_wallet(bank, wallet_dir, f"127.0.0.1:{merchant.port}", register=False).close()
    pan, card = _card_file(bank, tmp_path)
    wallet = ["wallet", "--dir", str(wallet_dir)]

    status, out, err = setpay([*wallet, "register", "--card", str(card)])
    assert (status, err) == (0, "")
    assert pan[:6] + "******" + pan[-4:] in out and pan not in out

    status, out, _ = setpay(
        ["merchant", "--dir", str(merchant.config.base_dir), "orders", "new",
         "--description", "a lamp", "--amount", "3450"]
    )  # fmt: skip
    assert status == 0
    initiation = tmp_path / "initiation.json"
    initiation.write_text(out)
    status, out, err = setpay([*wallet, "purchase", "--initiation", str(initiation)])
    assert (status, err) == (0, "")
    assert "AUTHORIZATION_PERFORMED" in out and "APPROVED" in out
    xid_prefix = out.split()[0]
    status, out, _ = setpay([*wallet, "inquire", xid_prefix])
    assert status == 0 and "AUTHORIZATION_PERFORMED" in out

    status, out, err = setpay([*wallet, "show"])
    assert status == 0
    assert f"card {pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]} expiry" in out
    assert pan not in out and pan_like_runs(out.encode()) == []
    assert "registered" in out and "1 purchases" in out
    assert files_with_pans(wallet_dir) == {}


def test_wrong_passphrase_is_refused(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    wallet_dir = tmp_path / "wallet-pass"
    new_wallet(bank, wallet_dir, None, register=False).close()
    _, card = _card_file(bank, tmp_path)
    assert run_cli(["wallet", "--dir", str(wallet_dir), "register", "--card", str(card)],
                   capsys)[0] == 0  # fmt: skip
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", "not the passphrase")
    status, out, err = run_cli(["wallet", "--dir", str(wallet_dir), "show"], capsys)
    assert status == 1 and "wrong wallet passphrase" in err and out == ""


def test_renew_then_buy_and_ask_about_the_earlier_purchase(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    tmp_path: Path,
    setpay: Setpay,
) -> None:
    merchant = make_merchant("m-cli-renew", AnswerMode.AFTER_AUTHORIZATION)
    wallet_dir = tmp_path / "wallet-renew"
    new_wallet(bank, wallet_dir, f"127.0.0.1:{merchant.port}", register=False).close()
    _, card = _card_file(bank, tmp_path)
    wallet = ["wallet", "--dir", str(wallet_dir)]
    form = ["--form", "cardholder-name=A. Holder"]
    assert setpay([*wallet, "register", "--card", str(card), *form])[0] == 0

    def purchase(amount: str) -> str:
        status, out, _ = setpay(
            ["merchant", "--dir", str(merchant.config.base_dir), "orders", "new",
             "--description", "a lamp", "--amount", amount]
        )  # fmt: skip
        assert status == 0
        initiation = tmp_path / f"initiation-{amount}.json"
        initiation.write_text(out)
        status, out, err = setpay([*wallet, "purchase", "--initiation", str(initiation)])
        assert (status, err) == (0, "") and "APPROVED" in out
        return out.split()[0]

    earlier = purchase("1100")
    status, out, err = setpay([*wallet, "renew", *form])
    assert (status, err) == (0, "") and "renewed the certificate of card" in out
    assert setpay([*wallet, "show"])[1].split("\n")[0].endswith(" registered")
    purchase("1200")
    status, out, err = setpay([*wallet, "inquire", earlier])
    assert (status, err) == (0, "") and "APPROVED" in out

    status, out, err = setpay([*wallet, "renew", "--form", "nickname=x"])
    assert status == 1 and "no field 'nickname'" in err and out == ""
