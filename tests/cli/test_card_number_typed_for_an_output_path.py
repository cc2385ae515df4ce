"""A card number typed where ``bank open-account`` or ``issue-enrolment-code`` take the
path of the card file to write (``--card-out``): ``open-account --card-out 4539...`` wrote
the new card's data into a file named by the card number and said "card data in
4539...". The option now refuses a path a part of which is a card number
(``cli.path_options.output_path``), a usage error (exit 2) said without the number, before
anything is made, opened or changed. Other paths (a bench report, a work directory) keep
their timestamps: only their usage errors are masked. And the wallet's refusals of a card
file or an initiation file named by the card number name it masked
(``cli.usage_errors.shown_path``), as its "cannot read" did already."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from cli.main import build_parser, main
from cli.path_options import output_path
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

MASKED = "453957******1486"
# The card as it may be typed for a path: whole, grouped, in a name, as a directory.
TYPED = [
    CARD,
    "4539 5787 6362 1486",
    "4539-5787-6362-1486",
    f"card-{CARD}.json",
    f"{CARD}/card.json",
    "4539\uff0d5787\uff0d6362\uff0d1486",
]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return new_bank(tmp_path_factory, "card-for-an-output")


@pytest.mark.parametrize("typed", TYPED)
def test_open_account_refuses_a_card_number_for_card_out(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for directory in ("4539", "4539/5787/6362", CARD):  # a card file could be made there
        Path(directory).mkdir(parents=True, exist_ok=True)
    before, there = cards(made), listed(tmp_path)
    refused_card_out(open_account(made, typed), capsys)
    assert listed(tmp_path) == there
    assert cards(made) == before


def test_issue_enrolment_code_refuses_a_card_number_for_card_out(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("card.json").write_text("{}")  # refused before it is read
    refused_card_out(issue_enrolment_code(made, "card.json", CARD), capsys)
    assert os.listdir(tmp_path) == ["card.json"]


def test_open_account_takes_a_path_with_a_date(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A path's own numbers, fewer than a card's digits in a stretch, are no card number."""
    monkeypatch.chdir(tmp_path)
    Path("2026-11-25").mkdir()
    out = "2026-11-25/card-7.json"
    assert main(open_account(made, out)) == 0
    assert capsys.readouterr().out.endswith(f"card data in {out}\n")
    assert json.loads(Path(out).read_text())["expiry"] == "203012"


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "authorize", "--spawn", "--json", "bench-20261125-103000.json"],
        ["bench", "authorize", "--spawn", "--workdir", "runs/20261125/103000123"],
        ["wallet", "--dir", "wallet-20261125-103000", "show"],
    ],
)
def test_other_paths_keep_their_timestamps(argv: list[str]) -> None:
    """Only ``--card-out`` names the file a card number goes into, and is judged: a report
    or a directory named by a timestamp (``bench-$(date +%Y%m%d-%H%M%S).json``, 14 digits
    with no letter between them) is a load tester's everyday name, and is taken."""
    args = build_parser().parse_args(argv)
    assert str(argv[-1] if argv[0] == "bench" else argv[2]) in {
        str(value) for value in vars(args).values() if isinstance(value, Path)
    }


@pytest.mark.parametrize(
    "path",
    [
        "card.json",
        "cards/2026-11-25/card-7.json",
        "backup/20261125-1200.json",
        "runs/2026-11-25T10-30-00/report.json",
        "lot 123456789012/card.json",  # twelve digits: fewer than any card number's
        "",
        # Dated trees and timestamps that fail the Luhn check: not read across the slashes.
        "/srv/setpay/cards/2026/11/25/000123.json",
        "cards/branch-0042/2026-11-25/7.json",
        "cards/card-20261125-103000.json",
        "20261125103001.json",  # no window of 13 digits passing the check either
        "4539/5787/6362/1486",  # a part holds four digits
    ],
)
def test_output_path_takes_a_path_with_no_card_number(path: str) -> None:
    assert output_path(path) == Path(path)


@pytest.mark.parametrize(
    "path",
    [
        *TYPED,
        "runs/1234567890128.json",
        "4539 5787 6362 1486 .json",
        "20261125103000.json",  # its last 13 digits pass the check
    ],
)
def test_output_path_refuses_a_path_that_could_hold_a_card_number(path: str) -> None:
    """Any 13 to 19 digits of a part passing the Luhn check, as every card number does (a
    timestamp so, once in ten; one with no separator, whose 13-digit windows are searched
    too, more than one time in four): the message says how to name it."""
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        output_path(path)
    assert str(refused.value).startswith(REFUSED)
    assert "a letter between the digits will do" in str(refused.value)


def _wallet(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``setpay wallet`` refusing ARGV (status 1): its standard error."""
    code = main(["wallet", "--dir", "wallet", *argv])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    no_card_number_in(err)
    return err


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{}", f"{MASKED} is not a card file (KeyError)"),
        ('{"pan": 4539578763621486, "expiry": "203012"}',
         f"{MASKED} is not a card file: its pan is not text (a JSON string of digits)"),
        ('{"pan": "4539578763621487", "expiry": "203012"}',
         f"{MASKED} is not a card file (InvalidPAN)"),
        ('{"pan": "4539578763621486", "expiry": "2030-12"}',
         f"{MASKED}: the card's expiry is not YYYYMM of a year from 2000 to 2099"),
        ('{"pan": "4539578763621486", "expiry": "200001"}',
         f"{MASKED}: the card expired (01/2000)"),
    ],
)  # fmt: skip
def test_a_card_file_named_by_the_card_number_is_named_masked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(CARD).write_text(content)
    Path(CARD).chmod(0o600)
    assert _wallet(["register", "--card", CARD], capsys) == f"setpay wallet: {said}\n"


def test_a_shared_card_file_named_by_the_card_number_is_warned_about_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(CARD).write_text(json.dumps({"pan": CARD, "expiry": "203012"}))
    Path(CARD).chmod(0o644)
    err = _wallet(["register", "--card", CARD], capsys)
    assert err.startswith(f"setpay wallet: warning: {MASKED} holds the card number in clear")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[]", f"{MASKED} is not a SET Initiation (a JSON object)"),
        ("{", f"{MASKED} is not JSON: expected a SET Initiation"),
        ('{"lid_m": "00"}', f"{MASKED} has no description, currency, amount: not a complete "
                            "SET Initiation"),
        ('{"amount": 1, "amount": 2}', f"{MASKED} names a member more than once: not a SET "
                                       "Initiation to pay"),
    ],
)  # fmt: skip
def test_an_initiation_file_named_by_the_card_number_is_named_masked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(CARD).write_text(content)
    assert _wallet(["purchase", "--initiation", CARD], capsys) == f"setpay wallet: {said}\n"
