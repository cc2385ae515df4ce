"""A card number beside other digits, no letter between them, in a part of a ``--card-out``
path: a date before it, a copy number or a count after it (``cards/2026-11-25_4539....json``,
``cards/4539..._1.json``, ``cards/4539... (2).json``). Its stretch's digits were checked
only all together, failed the Luhn check, and the path was taken: ``open-account`` and
``issue-enrolment-code`` wrote the card data into a file named by the card number, and
printed it whole, "card data in PATH" on standard output, "cannot create --card-out PATH"
on standard error. Each of a stretch's candidates is now checked, as a settling's reason's
are (``cli.path_options``), and such a path is a usage error (exit 2) before anything is
made. And the bank names a ``--card-out`` file as ``cli.usage_errors.shown_path`` does: a
card number typed with slashes between its groups, taken on purpose as directories, is
shown masked."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import gateway.issuer
from cli.main import main
from cli.path_options import output_path
from gateway.config import BankConfig
from gateway.ledger import LedgerStore, accounts
from gateway.provisioning import InitResult, init_bank
from tests.cli.ledger_outcome_support import OutcomeUnknown

USAGE = 2
# A test card whose middle digits are all different from its BIN's and last four's.
CARD = "4539578763621486"
REFUSED = "a part of the path holds 13 to 19 digits passing the Luhn check, which could be"
# The card number beside other digits in a part of the path (the review's four, and the
# one whose "cannot create" said it), grouped beside a date, with its security code glued.
BESIDE = [
    f"cards/2026-11-25_{CARD}.json",
    f"cards/{CARD}_1.json",
    f"cards/card-{CARD}-2.json",
    f"cards/{CARD} (2).json",
    f"no-such-directory/2026-11-25_{CARD}.json",
    "cards/2026-11-25 4539 5787 6362 1486.json",
    "cards/4539 5787 6362 1486124.json",
]
# The card typed with slashes between its groups: four directories' names, taken.
SLASHED = "4539/5787/6362/1486"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A real bank: with it, the old code opened the account and named its file."""
    return init_bank(tmp_path_factory.mktemp("card-beside-digits") / "bank", env={})


def _cards(made: InitResult) -> int:
    """How many card accounts the bank's (SQLite) ledger holds."""
    db = sqlite3.connect(f"file:{made.directory / 'ledger.db'}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM card_accounts").fetchone()
    finally:
        db.close()
    return int(count)


def _no_card_number_in(text: str) -> None:
    """Not one digit of the card's middle, in any grouping: only its masked form may show."""
    assert re.search(r"5\D*7\D*8\D*7\D*6\D*3\D*6\D*2", text) is None, text


def _listed(root: Path) -> list[str]:
    return sorted(str(path) for path in root.rglob("*"))


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``setpay bank ARGV`` is a usage error about ``--card-out``, saying why without the
    card number, with nothing on standard output."""
    with pytest.raises(SystemExit) as stopped:
        main(["bank", *argv])
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    assert f"argument --card-out: {REFUSED}" in " ".join(err.split())
    _no_card_number_in(err)


@pytest.mark.parametrize("path", BESIDE)
def test_output_path_refuses_a_card_number_beside_other_digits(path: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        output_path(path)
    assert str(refused.value).startswith(REFUSED)


@pytest.mark.parametrize("path", BESIDE)
def test_open_account_refuses_a_card_number_beside_other_digits(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cards").mkdir()
    Path("pan").write_text(CARD)  # the review's: the card the path names is the card opened
    before, listed = _cards(made), _listed(tmp_path)
    argv = ["--config", str(made.config_path), "open-account", "--limit", "5000",
            "--expiry", "203012", "--pan-file", "pan", "--card-out", path]  # fmt: skip
    _refused(argv, capsys)
    assert _listed(tmp_path) == listed
    assert _cards(made) == before


@pytest.mark.parametrize("path", BESIDE)
def test_issue_enrolment_code_refuses_a_card_number_beside_other_digits(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cards").mkdir()
    Path("card.json").write_text("{}")  # refused before it is read
    listed = _listed(tmp_path)
    argv = ["--config", str(made.config_path), "issue-enrolment-code",
            "--card", "card.json", "--card-out", path]  # fmt: skip
    _refused(argv, capsys)
    assert _listed(tmp_path) == listed


@pytest.mark.parametrize(
    "path",
    [
        "cards/branch-0042/2026-11-25/7.json",
        "cards/2026-11-25/103000.json",
        "cards/2026-11-25T10-30-00.json",
        "cards/2026-11-25_103001.json",  # none of its candidates passes the check
        "cards/20261125-103001.json",
        "cards/card-7 (2).json",
    ],
)
def test_output_path_takes_dated_names_with_no_card_number(path: str) -> None:
    assert output_path(path) == Path(path)


def _open(made: InitResult, out: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``setpay bank open-account --card-out OUT`` (a random card); (status, out, err)."""
    argv = ["bank", "--config", str(made.config_path), "open-account", "--limit", "5000",
            "--expiry", "203012", "--card-out", out]  # fmt: skip
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_open_account_names_a_slashed_card_number_masked(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Taken, as four directories' names; the line saying where the card data went shows
    it masked, as does the "cannot create" of one whose directories are not there."""
    monkeypatch.chdir(tmp_path)
    Path(SLASHED).parent.mkdir(parents=True)
    status, out, err = _open(made, SLASHED, capsys)
    assert (status, err) == (0, "")
    assert out.endswith("card data in 4539/57**/****/1486\n")
    _no_card_number_in(out)
    assert json.loads(Path(SLASHED).read_text())["expiry"] == "203012"
    status, out, err = _open(made, f"missing/{SLASHED}", capsys)
    assert (status, out) == (1, "")
    assert err == "setpay bank: cannot create --card-out missing/4539/57**/****/1486: No such file or directory\n"  # fmt: skip  # noqa: E501


def test_issue_enrolment_code_names_a_slashed_card_number_masked(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _open(made, "card.json", capsys)[0] == 0
    Path(SLASHED).parent.mkdir(parents=True)
    argv = ["bank", "--config", str(made.config_path), "issue-enrolment-code",
            "--card", "card.json", "--card-out", SLASHED]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == "" and "new enrolment code in 4539/57**/****/1486;" in out
    _no_card_number_in(out)
    assert json.loads(Path(SLASHED).read_text())["enrolment_code"]


def test_an_unconfirmed_opening_names_a_slashed_card_number_masked(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The advice after a lost acknowledgement names the kept file four times, masked."""
    monkeypatch.chdir(tmp_path)
    Path(SLASHED).parent.mkdir(parents=True)
    real_open_store = gateway.issuer.open_store

    def unconfirmed(config: BankConfig, *args: Any, **kwargs: Any) -> LedgerStore:
        store = real_open_store(config, *args, **kwargs)
        return OutcomeUnknown(store, accounts.open_card, committed=True)  # type: ignore[return-value]

    monkeypatch.setattr(gateway.issuer, "open_store", unconfirmed)
    status, out, err = _open(made, SLASHED, capsys)
    assert (status, out) == (1, "")
    assert err.count("4539/57**/****/1486") == 4
    _no_card_number_in(err)
    assert Path(SLASHED).exists()  # kept: it may be the card's only copy


def test_open_account_names_a_dated_tree_as_typed(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dated tree's digits, read across its slashes, are no card number: the line
    names the file as typed, not with its date masked."""
    monkeypatch.chdir(tmp_path)
    dated = "cards/branch-0042/2026-11-25/7.json"
    Path(dated).parent.mkdir(parents=True)
    status, out, err = _open(made, dated, capsys)
    assert (status, err) == (0, "")
    assert out.endswith(f"card data in {dated}\n")


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_CIRCLED = str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨")
# The card number with a letter of another script between its groups (a Japanese input
# method's long-vowel mark typed for a dash, a Hangul filler shown as a space), or in
# superscript or circled digits: a letter ended a stretch here, and such digits read as
# none, where a settling's reason is judged otherwise (the review of this round's fix).
OTHER_SCRIPTS = [
    "cards/4539\u30fc5787\u30fc6362\u30fc1486.json",
    "cards/4539\u31645787\u31646362\u31641486.json",
    f"cards/{CARD.translate(_SUPERSCRIPT)}.json",
    f"cards/{CARD.translate(_CIRCLED)}.json",
]


@pytest.mark.parametrize("path", OTHER_SCRIPTS)
def test_output_path_refuses_a_card_number_written_in_another_script(path: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        output_path(path)
    assert str(refused.value).startswith(REFUSED)


def test_open_account_refuses_a_card_number_grouped_by_a_long_vowel_mark(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cards").mkdir()
    before = _cards(made)
    argv = ["--config", str(made.config_path), "open-account", "--limit", "5000",
            "--expiry", "203012", "--card-out", OTHER_SCRIPTS[0]]  # fmt: skip
    _refused(argv, capsys)
    assert _listed(tmp_path) == [str(tmp_path / "cards")]
    assert _cards(made) == before
