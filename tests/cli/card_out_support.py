"""What the tests of ``--card-out`` given a card number for a path (``bank open-account``,
``bank issue-enrolment-code``) share: a real bank, the commands' lines, their refusal as
a usage error, and a look at the ledger, a directory and a text for the card number."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from cli.main import main
from gateway.provisioning import InitResult, init_bank
from tests.cli.command_support import USAGE

# A test card whose middle digits are all different from its BIN's and last four's.
CARD = "4539578763621486"
REFUSED = "a part of the path holds 13 to 19 digits passing the Luhn check"


def new_bank(factory: pytest.TempPathFactory, name: str) -> InitResult:
    """A real bank, in a new directory named after ``name``: with it, the old code opened
    the account the tests refuse."""
    return init_bank(factory.mktemp(name) / "bank", env={})


def open_account(made: InitResult, out: str, *more: str) -> list[str]:
    """``setpay bank open-account`` of a card to expiry 12/2030, its data into OUT."""
    return ["bank", "--config", str(made.config_path), "open-account", "--limit", "5000",
            "--expiry", "203012", *more, "--card-out", out]  # fmt: skip


def issue_enrolment_code(made: InitResult, card: str, out: str) -> list[str]:
    """``setpay bank issue-enrolment-code`` for the card file CARD, its data into OUT."""
    return ["bank", "--config", str(made.config_path), "issue-enrolment-code",
            "--card", card, "--card-out", out]  # fmt: skip


def cards(made: InitResult) -> int:
    """How many card accounts the bank's (SQLite) ledger holds."""
    db = sqlite3.connect(f"file:{made.directory / 'ledger.db'}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM card_accounts").fetchone()
    finally:
        db.close()
    return int(count)


def listed(root: Path) -> list[str]:
    """Every path under ``root``, sorted: what a refused command must leave as it was."""
    return sorted(str(path) for path in root.rglob("*"))


def no_card_number_in(text: str) -> None:
    """Not one digit of the card's middle, in any grouping: only its masked form may show."""
    assert re.search(r"5\D*7\D*8\D*7\D*6\D*3\D*6\D*2", text) is None, text


def refused_card_out(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``setpay ARGV`` in this process is a usage error about ``--card-out``, saying why
    without the card number, and printing nothing on standard output."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    said = " ".join(err.split())
    assert f"argument --card-out: {REFUSED}, which could be a card number" in said
    no_card_number_in(err)
