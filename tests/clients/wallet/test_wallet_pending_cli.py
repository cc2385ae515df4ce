"""``setpay wallet`` around a held certificate request: ``register`` reports the card it
registered and refuses another card's; ``show`` tells a request never answered from one
the CA pended; an unregistered wallet says so once."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import CardSecrets, open_vault, seal
from setcore.pan import PAN
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.cli_support import run_cli

REQUEST_PENDED = registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED


def _no_sleep(seconds: float) -> None:
    """Polls of a pended request run back to back in tests."""


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wallet]:
    """A configured wallet with no card yet; the commands find its passphrase."""
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _card_file(directory: Path, name: str, pan: PAN, expiry: str) -> Path:
    """What ``setpay bank open-account --card-out`` hands the cardholder."""
    path = directory / f"{name}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": pan.reveal(), "expiry": expiry}, handle)
    return path


def _pend(bank: RunningBank, wallet: Wallet, pan: PAN, expiry: str) -> dict[str, str]:
    """Register ``pan`` with the issuer pending it; the sealed pending state."""
    bank.issuer.review(pan)
    registrar = CardholderRegistrar(
        wallet.config, wallet.backend, wallet.authority, wallet.trust, WALLET_PASSPHRASE,
        sleep=_no_sleep,
    )  # fmt: skip
    assert registrar.register(pan, expiry, EC).status == REQUEST_PENDED
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None
    return pending


def test_register_names_the_card_it_registered_and_refuses_another(
    bank: RunningBank, wallet: Wallet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pan_a, expiry_a), (pan_b, expiry_b) = bank.new_card(), bank.new_card()
    pending = _pend(bank, wallet, pan_a, expiry_a)
    bank.authority.decide_pending(
        base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"]), approve=True
    )
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "register", "--card"]

    card_b = _card_file(tmp_path, "b", pan_b, expiry_b)
    status, out, err = run_cli([*argv, str(card_b)], capsys)
    assert (status, out) == (1, "")
    assert f"holds the pending registration of card {pan_a.masked}, not {pan_b.masked}" in err
    assert "finish it with `setpay wallet register --card`" in err and "drop it by removing" in err
    # Nothing was resumed: card A's request is still held, for card A.
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pan == pan_a and held.pending == pending

    card_a = _card_file(tmp_path, "a", pan_a, expiry_a)
    status, out, err = run_cli([*argv, str(card_a)], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"registered card {pan_a.masked}: certificate ")
    assert pan_b.masked not in out


def test_show_tells_a_pended_request_from_one_never_answered(
    bank: RunningBank, wallet: Wallet, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, expiry = bank.new_card()
    pending = _pend(bank, wallet, pan, expiry)
    show = ["wallet", "--dir", str(wallet.config.base_dir), "show"]
    status, out, _ = run_cli(show, capsys)
    assert status == 0
    assert out.splitlines()[0] == (
        f"card {pan.masked} expiry {expiry} certificate request pended or in progress at "
        "the CA (run register again later)"
    )

    # The same request as it is held between sending it and verifying the CA's answer.
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    unanswered = pending | {"cert_request": "", "rrpid": "", "chall_ee3": ""}
    seal(
        wallet.config.card_file,
        CardSecrets(held.pan, held.expiry, held.card_secret, None, unanswered),
        WALLET_PASSPHRASE,
    )
    status, out, _ = run_cli(show, capsys)
    assert status == 0
    assert out.splitlines()[0] == (
        f"card {pan.masked} expiry {expiry} certificate request sent, no answer read yet "
        "(run register again)"
    )


def test_a_purchase_before_registering_says_so_once(
    wallet: Wallet, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase",
            "--lid-m", "ab", "--description", "d", "--amount", "1"]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    # The card file is opened first: it names the certificate to sign with.
    assert err.startswith(f"setpay wallet: no card file at {wallet.config.card_file}")
    assert err.count("register") == 1 and err.endswith(": register the card first\n")
