"""``setpay wallet renew --card CARD.json``: the card's new enrolment code read from the
bank's card file, never typed on the command line (where ``ps`` and the shell's history
show it), against a real Cardholder CA asking the bank's own ledger over TLS."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

import cli.wallet
from clients.wallet.config import load as load_wallet_config
from clients.wallet.vault import open_vault
from gateway.ledger.enrolment import new_enrolment_code
from gateway.process import tls_config
from setcore.pan import PAN
from tests.cards import card
from tests.clients.bank_support import (
    CREDIT_LIMIT,
    EUR,
    EXPIRY,
    WALLET_PASSPHRASE,
    RunningBank,
    new_wallet,
)
from tests.clients.wallet.ledger_ca_support import ledger_asking_ca

from .conftest import Setpay

# Cards of these tests' own: BIN and serials.
TEST_BIN = "499996"


@contextmanager
def _wallet_asking_the_ledger(bank: RunningBank, directory: Path) -> Iterator[list[str]]:
    """A wallet directory whose Cardholder CA (the bank's keys, ca.db and TLS) asks the
    bank's ledger, which knows enrolment codes (the bank's own CA asks a test desk that
    takes none); the ``setpay wallet --dir`` words for it."""
    with ledger_asking_ca(bank, tls_config(bank.config, mutual=False)) as port:
        new_wallet(replace(bank, ca_port=port), directory, None, register=False).close()
        yield ["wallet", "--dir", str(directory)]


def _card_file(path: Path, pan: str, code: str | None = None) -> Path:
    """What ``setpay bank open-account --card-out`` (or ``issue-enrolment-code``) writes."""
    content = {"pan": pan, "expiry": EXPIRY, "account": "card-x"}
    if code is not None:
        content["enrolment_code"] = code
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle)
    return path


def test_a_new_code_is_given_from_the_card_file(
    bank: RunningBank, tmp_path: Path, setpay: Setpay
) -> None:
    """Registered before the card had a code; the bank gives it one: the renewal without
    it is refused and says how to give it; ``--card`` gives it, and the wallet keeps it."""
    pan = card(TEST_BIN, 1)
    account = bank.ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR)
    with _wallet_asking_the_ledger(bank, tmp_path / "wallet") as wallet:
        old = _card_file(tmp_path / "card.json", pan)
        assert setpay([*wallet, "register", "--card", str(old)])[0] == 0
        code = new_enrolment_code()
        bank.ledger.set_enrolment_code(account.account_id, code)

        status, out, err = setpay([*wallet, "renew"])
        assert status == 1 and "REJECTED_BY_ISSUER" in err
        assert "setpay wallet renew --card CARD.json" in err

        new = _card_file(tmp_path / "new-card.json", pan, code)
        status, out, err = setpay([*wallet, "renew", "--card", str(new)])
        assert (status, err) == (0, ""), err
        assert out.startswith(f"renewed the certificate of card {PAN(pan).masked}")
        # Kept sealed: the next renewal needs no card file.
        assert setpay([*wallet, "renew"])[0] == 0
        sealed = load_wallet_config(tmp_path / "wallet").card_file
        assert open_vault(sealed, WALLET_PASSPHRASE).enrolment_code == code
        for text in (out, err):
            assert code not in text and pan not in text


def test_a_card_file_of_another_card_is_refused_before_anything_is_sent(
    bank: RunningBank, tmp_path: Path, setpay: Setpay
) -> None:
    pan, other = card(TEST_BIN, 2), card(TEST_BIN, 3)
    bank.ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR)
    with _wallet_asking_the_ledger(bank, tmp_path / "wallet") as wallet:
        assert setpay([*wallet, "register", "--card", str(_card_file(tmp_path / "a", pan))])[0] == 0
        _, before, _ = setpay([*wallet, "show"])
        wrong = _card_file(tmp_path / "b", other, new_enrolment_code())
        status, _, err = setpay([*wallet, "renew", "--card", str(wrong)])
        assert status == 1
        assert f"the card file is of card {PAN(other).masked}" in err
        assert PAN(pan).masked in err and pan not in err and other not in err
        _, after, _ = setpay([*wallet, "show"])
        assert after == before  # the same certificate, no renewal under way


def test_renew_help_points_the_code_at_the_card_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--form still fills any field, enrolment-code included, but the help says the code
    goes in with --card."""
    parser = argparse.ArgumentParser(prog="setpay")
    cli.wallet.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["wallet", "renew", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--card CARD" in shown and "give an enrolment code with --card, not here" in shown
