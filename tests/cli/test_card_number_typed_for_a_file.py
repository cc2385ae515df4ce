"""A card number typed where an option takes a file: ``setpay bank release-card --card``,
``issue-enrolment-code --card``, ``open-account --pan-file``, ``wallet register --card``,
``wallet purchase --initiation``. The value is a path to argparse, which takes it, and
the command's refusal named the file: "cannot read --card 4539...: No such file or
directory", the card number whole on standard error. It is now named with the digits of
a card number in it masked (``cli.usage_errors.shown_path``), and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.main import main
from cli.usage_errors import shown_path
from gateway.provisioning import InitResult, init_bank

# A test card whose middle digits are all different from its BIN's and last four's.
CARD = "4539578763621486"
MASKED = "453957******1486"
HIDDEN = CARD[6:-4]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("card-for-a-file") / "bank", env={})


def _said(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``setpay ARGV`` in this process, as the program parses it: (status, stderr); it
    must write nothing to standard output."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["release-card", "--card", CARD], f"cannot read --card {MASKED}"),
        (["issue-enrolment-code", "--card", CARD, "--card-out", "new.json"],
         f"cannot read --card {MASKED}"),
        (["release-card", "--pan-file", CARD], f"cannot read --pan-file {MASKED}"),
        (["open-account", "--limit", "5", "--expiry", "203012", "--pan-file", CARD,
          "--card-out", "new.json"], f"cannot read --pan-file {MASKED}"),
    ],
)  # fmt: skip
def test_a_bank_command_given_the_card_number_for_its_file_masks_it(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _said(["bank", "--config", str(made.config_path), *command], capsys)
    assert code == 1
    assert err == f"setpay bank: {said}: No such file or directory\n"
    assert HIDDEN not in err
    assert os.listdir(tmp_path) == []


def test_a_card_file_of_the_card_numbers_name_is_named_masked(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every refusal of ``--card`` names the file so, not only "cannot read"."""
    monkeypatch.chdir(tmp_path)
    Path(CARD).write_text("{}")
    code, err = _said(["bank", "--config", str(made.config_path), "release-card", "--card", CARD],
                      capsys)  # fmt: skip
    assert code == 1
    assert err == f"setpay bank: --card {MASKED} is not a card file (KeyError)\n"


@pytest.mark.parametrize(
    "command",
    [["register", "--card", CARD], ["purchase", "--initiation", CARD]],
)
def test_a_wallet_given_the_card_number_for_a_file_masks_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _said(["wallet", "--dir", str(tmp_path / "wallet"), *command], capsys)
    assert code == 1
    assert err == f"setpay wallet: cannot read {MASKED}: No such file or directory\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (CARD, MASKED),
        ("4539 5787 6362 1486", "4539 57** **** 1486"),
        (f"cards/{CARD}.json", f"cards/{MASKED}.json"),
        ("4539\uff0d5787\uff0d6362\uff0d1486", "4539\uff0d57**\uff0d****\uff0d1486"),
        # A path's own numbers, fewer digits than a card's in a stretch, as typed.
        ("cards/2026-11-25/card-7.json", "cards/2026-11-25/card-7.json"),
        ("backup/20261125-1200.json", "backup/20261125-1200.json"),
        # Not the rest of a card, as a usage error masks: the card is whole in the word.
        ("5787 6362 1486", "5787 6362 1486"),
    ],
)
def test_shown_path(path: str, shown: str) -> None:
    assert shown_path(Path(path)) == shown
    assert shown_path(path) == shown
