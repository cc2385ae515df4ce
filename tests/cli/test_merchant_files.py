"""``setpay merchant`` and files: one it cannot write is named, not shown as a traceback;
the settlement account comes from an owner-only file rather than the command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli.merchant
from clients.merchant.config import load
from tests.clients.bank_support import RunningBank, configure_merchant, serving_bank
from tests.clients.cli_support import run_cli

KEYSTORE_PASSPHRASE = "keystore passphrase for the merchant CLI tests"
# An IBAN-shaped settlement account (letters and digits, no long run of digits).
ACCOUNT = "DE44 5001 0517 5407 3249 31"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBank]:
    """A real bank (Merchant CA over TLS) for this module, its keystore passphrase set."""
    with serving_bank(tmp_path_factory.mktemp("bank") / "bank", KEYSTORE_PASSPHRASE) as running:
        yield running


def _register(directory: Path, bank: RunningBank, *extra: str) -> list[str]:
    root = str(bank.directory / "certs/brand-root.der")
    return ["merchant", "--dir", str(directory), "register", "--root", root, *extra]


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.chmod(path, mode)  # whatever the umask took away
    return path


def test_a_file_error_is_named_not_a_traceback(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The review's case: ``certs`` is a plain file, so the root cannot be pinned under it.
    directory = tmp_path / "shop"
    configure_merchant(bank, directory, "m-files-1", pin_root=False)
    (directory / "certs").write_text("not a directory\n")
    status, out, err = run_cli(_register(directory, bank), capsys)
    assert (status, out) == (1, "")
    assert err == f"setpay merchant: {directory / 'certs'}: File exists\n"


def test_an_account_file_others_can_read_is_refused_before_anything_is_done(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "shop"
    configure_merchant(bank, directory, "m-files-2", pin_root=False)
    account = _secret_file(tmp_path / "account", ACCOUNT, 0o644)
    status, _, err = run_cli(_register(directory, bank, "--account-file", str(account)), capsys)
    assert status == 1
    assert err.startswith(f"setpay merchant: --account-file: secret file {account} is ")
    assert "chmod 600" in err and ACCOUNT not in err
    assert not load(directory).root.exists()  # no root pinned, no keys made
    assert not (directory / "keys").exists()


def test_a_missing_account_file_is_named(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "shop"
    configure_merchant(bank, directory, "m-files-3", pin_root=False)
    missing = tmp_path / "no-such-account"
    status, _, err = run_cli(_register(directory, bank, "--account-file", str(missing)), capsys)
    assert status == 1 and f"cannot read secret file {missing}" in err


def test_register_with_an_account_file(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The Merchant CA opens the account sealed to it (and refuses one of the wrong size).
    directory = tmp_path / "shop"
    configure_merchant(bank, directory, "m-files-4", pin_root=False)
    account = _secret_file(tmp_path / "account", ACCOUNT)
    status, out, err = run_cli(_register(directory, bank, "--account-file", str(account)), capsys)
    assert (status, err) == (0, "")
    assert out.startswith("registered m-files-4: signature certificate")


def test_the_account_file_is_what_registration_gets(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.merchant.add_parser(parser.add_subparsers(dest="command"))
    account = _secret_file(tmp_path / "account", ACCOUNT)
    args = parser.parse_args(["merchant", "register", "--account-file", str(account)])
    assert cli.merchant._account(args) == ACCOUNT  # one trailing newline dropped
    args = parser.parse_args(["merchant", "register", "--account", "FR76"])
    assert cli.merchant._account(args) == "FR76"
    assert cli.merchant._account(parser.parse_args(["merchant", "register"])) is None
    with pytest.raises(SystemExit):  # one or the other
        parser.parse_args(
            ["merchant", "register", "--account", "x", "--account-file", str(account)]
        )


def test_the_account_option_warns_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.merchant.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["merchant", "register", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--account-file FILE" in text
    assert "unsafe, ps and the shell's history show it to others; prefer --account-file" in text
