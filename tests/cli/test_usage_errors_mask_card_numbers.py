"""A usage error never repeats a card number: argparse's messages quote what was typed
(``unrecognized arguments: ...``, ``invalid choice: '...'``, ``invalid int value``), and
a card number typed into the wrong place, in one word or in its groups, was written on
standard error whole, or all but the group an option took. Every parser of ``setpay``
now masks it as ``mask_pan`` does, keeping argparse's words and status 2: grouped with
any character but a letter, and its rest left in one word (or two groups) judged on the
words typed, not on the message alone."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import _Parser, build_parser, main
from cli.number_options import CARD_DIGITS
from cli.usage_errors import REST_DIGITS, without_card_numbers
from setcore.pan import MIN_PAN_DIGITS, luhn_valid

PROJECT = Path(__file__).resolve().parents[2]
# Bounds each child: a usage error comes before anything is opened or imported but argparse.
CHILD_TIMEOUT_SECONDS = 60
USAGE = 2
# A test card whose middle digits are all different from its BIN's and last four's, so
# that any of them shown is seen.
CARD = "4539578763621486"
HIDDEN = CARD[6:-4]  # what mask_pan never shows
SPACED = "4539 5787 6362 1486"


def _setpay(*argv: str) -> subprocess.CompletedProcess[str]:
    """``setpay ARGV`` as the program, its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True, check=False,
        timeout=CHILD_TIMEOUT_SECONDS, cwd=PROJECT,
    )  # fmt: skip


def _shows_no_hidden_digit(text: str) -> bool:
    """Whether ``text``, its separators taken out, holds none of the card's hidden digits
    (nor three of them in a row)."""
    squeezed = re.sub(r"[\s\-.]|\\xa0", "", text)
    return all(HIDDEN[i : i + 3] not in squeezed for i in range(len(HIDDEN) - 2))


def test_the_card_is_one() -> None:
    assert luhn_valid(CARD) and len(set(HIDDEN) & set(CARD[:6] + CARD[-4:])) < len(set(HIDDEN))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # An option took the first group: the rest, 12 digits, was repeated whole.
        (["merchant", "orders", "new", "--description", "a lamp", "--amount", *SPACED.split()],
         "setpay: error: unrecognized arguments: 57** **** 1486"),
        (["wallet", "purchase", "--lid-m", "ab", "4539-5787-6362-1486"],
         "setpay: error: unrecognized arguments: 4539-57**-****-1486"),
        (["bank", CARD],
         "setpay bank: error: argument bank_command: invalid choice: '453957******1486'"),
        (["ca", "list", "--config", "setpay.toml", *SPACED.split()],
         "setpay: error: unrecognized arguments: 4539 57** **** 1486"),
        (["bench", "4539.5787.6362.1486"],
         "setpay bench: error: argument bench_command: invalid choice: '4539.57**.****.1486'"),
        (["bench", "authorize", "--spawn", *SPACED.split()],
         "setpay: error: unrecognized arguments: 4539 57** **** 1486"),
        # Copied from a web page: no-break spaces, which argparse's %r writes as escapes.
        (["bank", SPACED.replace(" ", "\xa0")],
         "invalid choice: '4539\\xa057**\\xa0****\\xa01486'"),
        (["--log-level", CARD, "keys"],
         "setpay: error: argument --log-level: invalid choice: '453957******1486' (choose"),
        (["health", "--target", "h:1", SPACED],
         "setpay: error: unrecognized arguments: 4539 57** **** 1486"),
        # Grouped with what no list of separators named: direction marks (copied from a
        # right-to-left page), fullwidth hyphens (a Japanese input method).
        (["wallet", "show", SPACED.replace(" ", "\u200e")],
         "setpay: error: unrecognized arguments: 4539\u200e57**\u200e****\u200e1486"),
        (["--log-level", SPACED.replace(" ", "\uff0d"), "keys"],
         "argument --log-level: invalid choice: '4539\uff0d57**\uff0d****\uff0d1486' (choose"),
    ],
)  # fmt: skip
def test_a_card_number_typed_by_mistake_is_masked(argv: list[str], said: str) -> None:
    done = _setpay(*argv)
    assert done.returncode == USAGE
    assert said in done.stderr
    assert done.stdout == ""
    assert _shows_no_hidden_digit(done.stderr)


# The rest of a card the message alone cannot tell from a number: one word of 9 to 12
# digits, or the last two groups, after an option (and a positional) took the first.
_REST_LEFT = [
    (["merchant", "orders", "new", "--amount", "5", "--description", "4539", CARD[4:]],
     "setpay: error: unrecognized arguments: 57******1486\n"),
    (["merchant", "orders", "new", "--amount", "5", "--description=4539", CARD[4:]],
     "setpay: error: unrecognized arguments: 57******1486\n"),
    (["merchant", "orders", "new", "--amount", "5", "--description", "3782", "82246310005"],
     "setpay: error: unrecognized arguments: 8******0005\n"),
    (["merchant", "orders", "new", "--amount", "5", "--description", "4222", "222222222"],
     "setpay: error: unrecognized arguments: *****2222\n"),
    (["merchant", "capture", "--amount", *SPACED.split()],
     "setpay: error: unrecognized arguments: **** 1486\n"),
    (["wallet", "--dir", "4539", CARD[4:]],
     "setpay wallet: error: argument wallet_command: invalid choice: '57******1486' (choose"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "said"), _REST_LEFT)
def test_the_rest_of_a_card_is_masked_by_the_words_typed(argv: list[str], said: str) -> None:
    done = _setpay(*argv)
    assert done.returncode == USAGE
    assert said in done.stderr
    assert _shows_no_hidden_digit(done.stderr)


@pytest.mark.parametrize(("argv", "said"), _REST_LEFT)
def test_main_called_with_words_masks_as_the_program(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == USAGE
    assert said in capsys.readouterr().err


def test_a_card_of_repeated_groups_shows_what_each_place_does() -> None:
    """``1111`` is shown at the card's end, hidden in its middle: hidden."""
    typed = ["merchant", "capture", "--amount", "4111", "1111", "1111", "1111"]
    message = "unrecognized arguments: 1111 1111"
    assert without_card_numbers(message, typed) == "unrecognized arguments: **** ****"


def test_the_words_typed_mask_only_a_card_numbers_digits() -> None:
    """Numbers typed beside one another, fewer digits together than a card number, are
    repeated as typed; a word of the card not in the message changes nothing."""
    typed = ["bench", "authorize", "--rate", "500", "--seconds", "10", "120", "4500"]
    message = "unrecognized arguments: 120 4500"
    assert without_card_numbers(message, typed) == message
    typed = ["merchant", "capture", "--amount", *SPACED.split()]
    assert without_card_numbers("invalid choice: 'capturer'", typed) == "invalid choice: 'capturer'"


def test_an_invalid_int_value_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own message for a ``type`` that raises ValueError (no option of setpay's
    does today: each says its own, with ``shown``; one added later would)."""
    parser = build_parser(wired=())
    parser.add_argument("--count", type=int)
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--count", SPACED, "bank"])
    assert stopped.value.code == USAGE
    err = capsys.readouterr().err
    assert "error: argument --count: invalid int value: '4539 57** **** 1486'" in err
    assert _shows_no_hidden_digit(err)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._name_parser_map.values():
                yield from _parsers(sub)


def test_every_parser_masks() -> None:
    """``add_subparsers`` makes each subcommand's parser of its parent's class: every one,
    to the deepest (``merchant orders new``), is setpay's, which masks."""
    for wired in (None, ()):
        parsers = list(_parsers(build_parser(wired)))
        assert len(parsers) > (40 if wired is None else 10)
        assert {type(parser) for parser in parsers} == {_Parser}


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("4539578763621486", "453957******1486"),
        ("4539 5787 6362 1486", "4539 57** **** 1486"),
        ("4539 - 5787 - 6362 - 1486", "4539 - 57** - **** - 1486"),
        ("4539_5787/6362,1486", "4539_57**/****,1486"),
        ("4539\u20095787\u200b6362\u20131486", "4539\u200957**\u200b****\u20131486"),
        ("'4539\\u20095787\\t6362\\n1486'", "'4539\\u200957**\\t****\\n1486'"),
        # Digits of another script are digits.
        ("\uff14\uff15\uff13\uff19 5787 6362 1486", "\uff14\uff15\uff13\uff19 57** **** 1486"),
        # Not only one passing the Luhn check: mistyped by one digit, it is still the card.
        ("4539 5787 6362 1487", "4539 57** **** 1487"),
        # The rest of a card an option took the first group of (16, 15 and 13 digits).
        ("5787 6362 1486", "57** **** 1486"),
        ("822463 10005", "8***** *0005"),
        ("2222 22222", "**** **222"),
        # More than a card number: one with its expiry and security code, nothing shown.
        ("4539 5787 6362 1486 12/28 123", "**** **** **** **** **/** ***"),
        # Any character but a letter between the groups: a list of separators missed
        # these, and the card went out whole.
        ("4539\uff0d5787\uff0d6362\uff0d1486", "4539\uff0d57**\uff0d****\uff0d1486"),
        ("\uff14\uff15\uff13\uff19\u30fb\uff15\uff17\uff18\uff17\u30fb6362\u30fb1486",
         "\uff14\uff15\uff13\uff19\u30fb\uff15\uff17**\u30fb****\u30fb1486"),
        ("4539\u200e5787\u200e6362\u200e1486", "4539\u200e57**\u200e****\u200e1486"),
        ("4539\u00b75787\u00b76362\u00b71486", "4539\u00b757**\u00b7****\u00b71486"),
        ("4539\u2027 5787\u2027 6362\u2027 1486", "4539\u2027 57**\u2027 ****\u2027 1486"),
        ("4539\u066c5787\u066c6362\u066c1486", "4539\u066c57**\u066c****\u066c1486"),
        ("4539'5787'6362'1486", "4539'57**'****'1486"),
        ("4539:5787:6362:1486", "4539:57**:****:1486"),
    ],
)  # fmt: skip
def test_what_is_masked(typed: str, shown: str) -> None:
    message = f"unrecognized arguments: {typed} --verbose"
    assert without_card_numbers(message) == f"unrecognized arguments: {shown} --verbose"


@pytest.mark.parametrize(
    "message",
    [
        "argument --count: invalid int value: 'ten'",
        "unrecognized arguments: --verbose 12 5000",
        "argument --fd: must be a whole number from 0 to 2147483647 in digits 0-9, not '-1'",
        "argument --start: must be a whole number from 0 to 2**63 - 1, not 'x'",
        "unrecognized arguments: 2026-11-24 --at 14:30:05",
        "argument --currency: ... (978 is EUR, 840 USD, 392 JPY)",
        "unrecognized arguments: 4539 5787",  # two groups: fewer than the rest of any card
        "invalid choice: '4539' (choose from 'list', 'revoke')",
    ],
)
def test_what_is_kept(message: str) -> None:
    """A bound, an amount, a date, a card's first group alone: as argparse wrote them."""
    assert without_card_numbers(message) == message


def test_the_bounds_are_a_card_numbers() -> None:
    assert CARD_DIGITS == MIN_PAN_DIGITS
    assert REST_DIGITS == MIN_PAN_DIGITS - 4


def test_without_setcore_every_digit_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the card module fail to import (it loads protobuf), the usage error is still
    said, its digits all hidden."""
    monkeypatch.setitem(sys.modules, "setcore.pan", None)
    message = f"unrecognized arguments: {SPACED} --verbose"
    assert without_card_numbers(message) == "unrecognized arguments: **** **** **** **** --verbose"


def test_a_usage_error_with_no_card_number_imports_no_protocol() -> None:
    """The front door's refusal of a wrong subcommand, or of ``keys``'s options, loads no
    protobuf: ``setcore.pan`` is imported only for a message with digits to mask."""
    script = (
        "import sys\n"
        "from cli.main import main\n"
        "try:\n"
        "    main(['wallets', 'show'])\n"
        "except SystemExit as done:\n"
        "    print(done.code, 'setcore.pan' in sys.modules, 'google.protobuf' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False,
        timeout=CHILD_TIMEOUT_SECONDS, cwd=PROJECT,
    )  # fmt: skip
    assert done.stdout.split() == ["2", "False", "False"]
    assert "invalid choice: 'wallets'" in done.stderr


def test_help_is_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` is no error: argparse's help, on standard output, exit 0, even with a
    card number typed after it (argparse stops at ``--help``)."""
    with pytest.raises(SystemExit) as stopped:
        main(["ca", "--help", *SPACED.split()])
    assert stopped.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: setpay ca [-h] COMMAND ...")
    assert "*" not in out
