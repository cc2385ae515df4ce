"""``setpay bank``: open-account never opens an account whose card data has nowhere to go."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from cli import bank
from gateway.ledger import AccountExists, Ledger, UnknownAccount
from gateway.provisioning import InitResult, init_bank
from tests.cards import card, wrong_check_digit
from tests.cli.command_support import run_bank

# A valid test card number (Luhn) that no test here opens unless it says so.
TEST_BIN = "499999"
TEST_PAN = card(TEST_BIN, 10)
EXPIRY = "203012"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-cli") / "bank", env={})


def _pan_file(directory: Path, pan: str = TEST_PAN) -> Path:
    path = directory / "pan.txt"
    path.write_text(pan + "\n")
    return path


def _open(made: InitResult, *extra: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), "open-account", "--limit", "5000",
            "--expiry", EXPIRY, *extra]  # fmt: skip


def test_open_account_writes_the_card_file_owner_only(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    out = tmp_path / "card.json"
    code, stdout, err = run_bank(_open(made, "--card-out", str(out)), capsys)
    assert (code, err) == (0, "")
    card = json.loads(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert card["pan"] not in stdout and card["pan"][-4:] in stdout
    assert ledger.find_card_account(card["pan"]).account_id == card["account"]


@pytest.mark.parametrize("where", ["existing", "no-directory"])
def test_an_unusable_card_out_opens_no_account(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
    where: str,
) -> None:
    out = tmp_path / "card.json" if where == "existing" else tmp_path / "missing" / "card.json"
    if where == "existing":
        out.write_text("the cardholder's earlier card")
    argv = _open(made, "--pan-file", str(_pan_file(tmp_path)), "--card-out", str(out))
    code, stdout, err = run_bank(argv, capsys)
    assert code == 1 and stdout == ""
    assert err.startswith("setpay bank: cannot create --card-out") and str(out) in err
    assert "Traceback" not in err and TEST_PAN not in err
    with pytest.raises(UnknownAccount):
        ledger.find_card_account(TEST_PAN)
    if where == "existing":
        assert out.read_text() == "the cardholder's earlier card"


def test_a_refused_account_leaves_no_card_file(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    pan = card(TEST_BIN, 20)
    ledger.open_card_account(pan, EXPIRY, 100, 978)
    out = tmp_path / "card.json"
    code, _, err = run_bank(_open(made, "--pan-file", str(_pan_file(tmp_path, pan)),
                               "--card-out", str(out)), capsys)  # fmt: skip
    assert code == 1 and err.startswith("setpay bank: ") and pan not in err
    assert "Luhn" not in err  # refused by the ledger, not before
    assert not out.exists()
    with pytest.raises(AccountExists):
        ledger.open_card_account(pan, EXPIRY, 100, 978)


def test_pan_file_errors_are_clear(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "card.json"
    missing = tmp_path / "no-such-pan.txt"
    code, _, err = run_bank(_open(made, "--pan-file", str(missing), "--card-out", str(out)), capsys)
    assert code == 1 and err.startswith(f"setpay bank: cannot read --pan-file {missing}")
    bad = wrong_check_digit(TEST_PAN)
    code, _, err = run_bank(
        _open(made, "--pan-file", str(_pan_file(tmp_path, bad)), "--card-out", str(out)), capsys
    )
    assert code == 1 and "Luhn" in err and bad not in err
    assert not out.exists()


def test_a_missing_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "card.json"
    argv = ["--config", str(tmp_path / "setpay.toml"), "open-account", "--limit", "1",
            "--expiry", EXPIRY, "--card-out", str(out)]  # fmt: skip
    code, stdout, err = run_bank(argv, capsys)
    assert code == 1 and stdout == ""
    assert err.startswith("setpay bank: no configuration file at")
    assert not out.exists()


def test_card_data_that_cannot_be_written_closes_the_account(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pan = card(TEST_BIN, 30)
    out = tmp_path / "card.json"

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bank.os, "fsync", disk_full)
    code, _, err = run_bank(_open(made, "--pan-file", str(_pan_file(tmp_path, pan)),
                               "--card-out", str(out)), capsys)  # fmt: skip
    assert code == 1 and "cannot write --card-out" in err and "closed again" in err
    assert not out.exists()
    assert ledger.find_card_account(pan).status.value == "closed"


@pytest.mark.parametrize(
    "content",
    [
        '{"data_key": "00"}',  # the index key missing: a KeyError escaped as a traceback
        "[]",
        "not json",
        '{"data_key": 1, "index_key": 2}',
        '{"data_key": "zz", "index_key": "zz"}',
    ],
)
def test_a_damaged_ledger_keys_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    made = init_bank(tmp_path / "bank", env={})
    keys = made.directory / "ledger.keys"
    keys.write_text(content)
    out = tmp_path / "card.json"
    code, stdout, err = run_bank(_open(made, "--card-out", str(out)), capsys)
    assert code == 1 and stdout == ""
    assert err.startswith(f"setpay bank: {keys} is not a ledger keys file")
    assert "Traceback" not in err and not out.exists()


def test_a_merchant_account_id_is_printed_when_opened_and_shown(
    made: InitResult, capsys: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    """The bank hands the id to the merchant: the CA asks for it to register the ID again."""
    config = ["--config", str(made.directory / "setpay.toml")]
    code, opened, err = run_bank([*config, "open-merchant", "--merchant-id", "shop-cli"], capsys)
    assert (code, err) == (0, "")
    account_id = ledger.merchant_account("shop-cli").account_id
    assert opened.split() == ["opened", "merchant", "shop-cli", "account", account_id, "(978)"]
    code, shown, err = run_bank([*config, "show-merchant", "--merchant-id", "shop-cli"], capsys)
    assert (code, err) == (0, "")
    assert shown.split() == ["merchant", "shop-cli", "account", account_id, "(978)",
                             "balance", "0", "pending", "0"]  # fmt: skip


def test_an_unknown_merchant_is_a_clear_error(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(made.directory / "setpay.toml")]
    code, out, err = run_bank([*config, "show-merchant", "--merchant-id", "no-such-shop"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("setpay bank: ") and "no-such-shop" in err
