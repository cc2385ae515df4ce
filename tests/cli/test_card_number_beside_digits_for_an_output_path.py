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
from pathlib import Path
from typing import Any

import pytest

import gateway.issuer
from cli.main import main
from cli.path_options import output_path
from gateway.config import BankConfig
from gateway.ledger import LedgerStore, accounts
from gateway.provisioning import InitResult
from tests.cli.card_out_support import (
    CARD,
    REFUSED,
    cards,
    issue_enrolment_code,
    listed,
    new_bank,
    no_card_number_in,
    open_account,
    refused_card_out,
)
from tests.cli.ledger_outcome_support import OutcomeUnknown

# What ``output_path`` says, to the comma after which it says how to name such a path.
SAID = f"{REFUSED}, which could be"
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
    return new_bank(tmp_path_factory, "card-beside-digits")


@pytest.mark.parametrize("path", BESIDE)
def test_output_path_refuses_a_card_number_beside_other_digits(path: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        output_path(path)
    assert str(refused.value).startswith(SAID)


@pytest.mark.parametrize("command", ["open-account", "issue-enrolment-code"])
@pytest.mark.parametrize("path", BESIDE)
def test_bank_refuses_a_card_number_beside_other_digits(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cards").mkdir()
    Path("pan").write_text(CARD)  # the review's: the card the path names is the card opened
    Path("card.json").write_text("{}")  # refused before it is read
    before, there = cards(made), listed(tmp_path)
    if command == "open-account":
        argv = open_account(made, path, "--pan-file", "pan")
    else:
        argv = issue_enrolment_code(made, "card.json", path)
    refused_card_out(argv, capsys)
    assert listed(tmp_path) == there
    assert cards(made) == before


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
    status = main(open_account(made, out))
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
    no_card_number_in(out)
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
    assert main(issue_enrolment_code(made, "card.json", SLASHED)) == 0
    out, err = capsys.readouterr()
    assert err == "" and "new enrolment code in 4539/57**/****/1486;" in out
    no_card_number_in(out)
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
    no_card_number_in(err)
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
    assert str(refused.value).startswith(SAID)


def test_open_account_refuses_a_card_number_grouped_by_a_long_vowel_mark(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cards").mkdir()
    before = cards(made)
    refused_card_out(open_account(made, OTHER_SCRIPTS[0]), capsys)
    assert listed(tmp_path) == [str(tmp_path / "cards")]
    assert cards(made) == before
