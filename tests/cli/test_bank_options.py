"""``setpay bank``: a ``--bin`` that is not six digits, or a ``--currency`` no account is
kept in, is a usage error (exit 2) before the ledger is opened or a card file created."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import bank
from gateway.provisioning import InitResult, init_bank
from tests.cards import card

USAGE = 2
EXPIRY = "203012"
# A card number given where the BIN was wanted: never repeated in the error.
MISTAKEN_PAN = card("499999", 40)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    bank.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bank", *argv])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A real bank: with it, the old code opened the accounts these tests refuse."""
    return init_bank(tmp_path_factory.mktemp("bank-options") / "bank", env={})


def _open(made: InitResult, out: Path, *extra: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), "open-account", "--limit", "5000",
            "--expiry", EXPIRY, "--card-out", str(out), *extra]  # fmt: skip


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The usage error ``argv`` gets (argparse's exit 2, before bank.run), its stderr."""
    with pytest.raises(SystemExit) as stopped:
        bank.run(_parse(argv))
    assert stopped.value.code == USAGE
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.mark.parametrize(
    ("given", "length"), [("12", 2), ("41111", 5), ("4111111", 7), ("41111a", 6), ("", 0)]
)
def test_a_bin_that_is_not_six_digits_is_a_usage_error(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    given: str,
    length: int,
) -> None:
    """``--bin 12`` used to open an account whose card number started 12 and went on at
    random: a BIN nobody chose, whatever the gateway routes by it."""
    out = tmp_path / "card.json"
    err = _refused(_open(made, out, "--bin", given), capsys)
    assert f"argument --bin: a BIN is six digits 0-9 (given: {length} characters)" in err
    assert "the first six of the 16-digit card number" in err
    assert not out.exists()


def test_a_card_number_given_as_the_bin_is_not_repeated(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "card.json"
    err = _refused(_open(made, out, "--bin", MISTAKEN_PAN), capsys)
    assert "(given: 16 characters)" in err and MISTAKEN_PAN not in err
    assert not out.exists()


@pytest.mark.parametrize("currency", ["0", "1000", "999", "959", "-978"])
def test_an_account_in_no_currency_is_a_usage_error(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str
) -> None:
    """The ledger refused it too, but as a failure (exit 1) after the card file was made."""
    out = tmp_path / "card.json"
    err = _refused(_open(made, out, "--currency", currency), capsys)
    assert "argument --currency: not an ISO 4217 numeric currency code with a minor unit" in err
    assert not out.exists()
    argv = ["--config", str(made.directory / "setpay.toml"), "open-merchant",
            "--merchant-id", "m-options", "--currency", currency]  # fmt: skip
    assert "argument --currency: not an ISO 4217" in _refused(argv, capsys)


def test_a_six_digit_bin_and_a_currency_with_a_minor_unit_are_taken() -> None:
    args = _parse(["open-account", "--limit", "1", "--expiry", EXPIRY, "--card-out", "c",
                   "--bin", "499999", "--currency", "048"])  # fmt: skip
    assert (args.bin, args.currency) == ("499999", 48)
    assert (
        _parse(["open-account", "--limit", "1", "--expiry", EXPIRY, "--card-out", "c"]).bin
        == bank.DEFAULT_BIN
    )


@pytest.mark.parametrize(
    ("currency", "says"),
    [
        ("1", "currency 1 is not assigned in ISO 4217"),
        ("2", "currency 2 is not assigned in ISO 4217"),
        ("932", "currency 932 (ZWL) was withdrawn from ISO 4217"),
    ],
)
def test_an_account_in_a_code_iso_4217_does_not_list_now_is_refused_by_its_number(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str, says: str
) -> None:
    """The old code took every code from 1 to 999 as two-digit money and opened the card."""
    out = tmp_path / "card.json"
    err = _refused(_open(made, out, "--currency", currency), capsys)
    assert "argument --currency: not an ISO 4217 numeric currency code with a minor unit" in err
    assert says in err
    assert not out.exists()
    argv = ["--config", str(made.directory / "setpay.toml"), "open-merchant",
            "--merchant-id", "m-options", "--currency", currency]  # fmt: skip
    assert says in _refused(argv, capsys)
