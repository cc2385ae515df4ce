"""``setpay wallet register`` answered with a CertStatusCode this release does not know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.wallet import EXIT_OUTCOME_UNKNOWN
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.wallet.conftest import Setpay
from tests.clients.wallet.test_registration_unknown_status import _answering, _no_certificate


def test_register_answered_with_an_unknown_status_exits_4(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setpay: Setpay
) -> None:
    directory = tmp_path / "wallet"
    made = new_wallet(bank, directory, None, register=False)
    config = made.config
    made.close()  # nothing held open while the command runs
    pan, expiry = bank.new_card()
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"pan": pan.reveal(), "expiry": expiry}))
    card.chmod(0o600)
    _answering(monkeypatch)
    status, out, err = setpay(["wallet", "--dir", str(directory), "register", "--card", str(card)])
    assert (status, out) == (EXIT_OUTCOME_UNKNOWN, ""), err
    assert err.startswith("setpay wallet: the Cardholder CA answered the certificate request "
                          "with CertStatusCode 42"), err  # fmt: skip
    assert (
        "no certificate was installed" in err
        and "`setpay wallet register --card CARD.json` again" in err
    )
    assert pan.reveal() not in err
    wallet = Wallet.open(config)
    try:
        assert _no_certificate(wallet)
    finally:
        wallet.close()
    assert open_vault(config.card_file, WALLET_PASSPHRASE).pending is not None
