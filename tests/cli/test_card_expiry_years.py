"""A card expiry of a year outside 2000-2099 (``setcore.pan.check_expiry``): ``setpay
bank open-account`` refuses to open such a card, a usage error (exit 2) naming the years,
before the ledger is opened or a card file made (the ledger takes any year, but no
wallet, CA or gateway takes the card); and the wallet's refusal of such a card file names
the years too, where it said only "not YYYYMM" of a well-formed 210012."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cli import bank, wallet
from clients.errors import ClientError
from gateway.provisioning import InitResult, init_bank
from tests.cli.test_bank_options import MISTAKEN_PAN, _parse
from tests.gateway.actors import make_pan

USAGE = 2
YEARS = "a year from 2000 to 2099"
OUTSIDE = ["210012", "199912", "000001", "999912"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A real bank: with it, the old code opened the cards these tests refuse."""
    return init_bank(tmp_path_factory.mktemp("bank-expiry") / "bank", env={})


def _open(made: InitResult, out: Path, expiry: str) -> list[str]:
    return ["--config", str(made.directory / "setpay.toml"), "open-account", "--limit", "5000",
            "--expiry", expiry, "--card-out", str(out)]  # fmt: skip


def _cards(made: InitResult) -> int:
    """How many card accounts the bank's (SQLite) ledger holds, read as an operator would."""
    db = sqlite3.connect(f"file:{made.directory / 'ledger.db'}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM card_accounts").fetchone()
    finally:
        db.close()
    return int(count)


@pytest.mark.parametrize("expiry", OUTSIDE)
def test_open_account_refuses_an_expiry_of_another_year(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], expiry: str
) -> None:
    before = _cards(made)
    out = tmp_path / "card.json"
    with pytest.raises(SystemExit) as stopped:
        bank.run(_parse(_open(made, out, expiry)))
    assert stopped.value.code == USAGE
    printed, err = capsys.readouterr()
    assert printed == ""
    assert f"argument --expiry: a card expiry is YYYYMM, a month 01 to 12 of {YEARS}" in err
    assert not out.exists()
    assert _cards(made) == before


@pytest.mark.parametrize("expiry", ["203013", "2030-1", "20301", "", MISTAKEN_PAN])
def test_open_account_refuses_an_expiry_that_is_not_yyyymm_without_repeating_it(
    capsys: pytest.CaptureFixture[str], expiry: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        _parse(["open-account", "--limit", "1", "--expiry", expiry, "--card-out", "c"])
    assert stopped.value.code == USAGE
    err = capsys.readouterr().err
    assert f"a month 01 to 12 of {YEARS} (given: {len(expiry)} characters)" in err
    assert MISTAKEN_PAN not in err


@pytest.mark.parametrize("expiry", ["200001", "209912"])
def test_open_account_takes_the_first_and_last_years(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str], expiry: str
) -> None:
    out = tmp_path / "card.json"
    assert bank.run(_parse(_open(made, out, expiry))) == 0
    assert json.loads(out.read_text())["expiry"] == expiry
    assert f"expiry {expiry}" in capsys.readouterr().out


@pytest.mark.parametrize("expiry", OUTSIDE)
def test_a_card_file_of_another_year_is_refused_naming_the_years(
    tmp_path: Path, expiry: str
) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"pan": make_pan(21), "expiry": expiry, "account": "a"}))
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"{path}: the card's expiry is not YYYYMM of {YEARS}"
