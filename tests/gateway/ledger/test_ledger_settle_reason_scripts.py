"""A settling's reason (``gateway.ledger.unanswered.check_reason``) with the digits of more
than one script: a digit of another script than the card number's own, typed between its
groups, is read as a separator too.

Before, such a digit (an Arabic-Indic or an NKo one, which look like a bar or a dot, a
full-width one) was read only as one more digit: the groups beside it made one of nine
digits or more, no candidate was the card number, and about three card numbers in four
so typed were kept, and shown by every listing. No card number is spelled out here
(``tests.cards``).
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from gateway.ledger import InvalidRequest
from gateway.ledger.unanswered import check_reason
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid
from tests.cards import card

# The refusal's words (``tests.gateway.ledger.test_ledger_settle_reason``).
REFUSED = "no run of 13 or more digits"
_NUMBER = card("411111", 3)
# A digit one of other scripts than ASCII's: Arabic-Indic, Extended Arabic-Indic, NKo,
# Devanagari, Bengali, Thai, full-width, mathematical bold.
_OTHER_ONES = "\u0661\u06f1\u07c1\u0967\u09e7\u0e51\uff11\U0001d7cf"


def _groups(number: str) -> list[str]:
    """``number`` in groups of four digits, as a card is typed."""
    return [number[i : i + 4] for i in range(0, len(number), 4)]


def _in_script(number: str, zero: str) -> str:
    """``number`` in the digits of the script whose zero is ``zero``."""
    return "".join(chr(ord(zero) + int(digit)) for digit in number)


def _one_between(number: str, separator: str, after: int) -> str:
    """``number``'s groups spaced, but ``separator`` after its ``after`` first."""
    groups = _groups(number)
    return f"{' '.join(groups[:after])}{separator}{' '.join(groups[after:])}"


def _as_digits(text: str) -> str:
    """``text``'s digits of any script, as ASCII digits."""
    return "".join(str(unicodedata.digit(char)) for char in text if char.isdecimal())


def _no_window_passes(digits: str) -> bool:
    """Whether no window of ``digits`` as long as a card number passes the Luhn check."""
    return not any(
        luhn_valid(digits[start : start + size])
        for size in range(MIN_PAN_DIGITS, min(MAX_PAN_DIGITS, len(digits)) + 1)
        for start in range(len(digits) - size + 1)
    )


def _refused(reason: str) -> None:
    with pytest.raises(InvalidRequest, match=REFUSED) as refused:
        check_reason(reason)
    assert not re.search(r"\d{3}", str(refused.value))


@pytest.mark.parametrize("separator", list(_OTHER_ONES), ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("after", [1, 2, 3], ids=lambda n: f"after group {n}")
def test_a_digit_of_another_script_between_the_groups_is_refused(
    separator: str, after: int
) -> None:
    """Read as a digit, it made a group of nine that no candidate took whole."""
    assert separator.isdecimal() and not separator.isascii()
    _refused(f"refund to card {_one_between(_NUMBER, separator, after)}, customer called")


# A card number whose groups, with a one between each two read as a digit, hold no window
# passing the Luhn check: the first such of a test BIN's serials, spread out (its first
# thousand serials share too many digits for one to be such).
_HIDDEN = next(
    number
    for number in (card("601100", serial * 7919) for serial in range(1000))
    if _no_window_passes("1".join(_groups(number)))
)


@pytest.mark.parametrize("separator", list(_OTHER_ONES), ids=lambda c: f"U+{ord(c):04X}")
def test_a_digit_of_another_script_between_every_two_groups_is_refused(separator: str) -> None:
    reason = f"card {separator.join(_groups(_HIDDEN))} disputed"
    assert _no_window_passes(_as_digits(reason))
    _refused(reason)


@pytest.mark.parametrize(
    ("zero", "separator"),
    [("\u0660", "1"), ("\u0660", "\u06f1"), ("\u0966", "\u09e7"), ("\uff10", "1")],
    ids=[
        "Arabic-Indic, an ASCII one",
        "Arabic-Indic, an Extended one",
        "Devanagari, a Bengali one",
        "full-width, an ASCII one",
    ],
)
@pytest.mark.parametrize("after", [1, 2, 3], ids=lambda n: f"after group {n}")
def test_a_card_number_in_another_script_with_a_digit_of_a_third_is_refused(
    zero: str, separator: str, after: int
) -> None:
    """The card number's own digits need not be ASCII: those of any other script (ASCII
    included) stand apart."""
    _refused(f"card {_one_between(_in_script(_NUMBER, zero), separator, after)}")


_DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def test_a_digit_of_another_script_with_a_superscript_digit_is_refused() -> None:
    """The superscript kept and read as its digit while the other script's stand apart."""
    groups = _groups(_HIDDEN)
    superscript = unicodedata.lookup(f"SUPERSCRIPT {_DIGIT_NAMES[int(_HIDDEN[-1])]}")
    reason = f"card {chr(0x661).join(groups)[:-1]}{superscript} disputed"
    _refused(reason)


@pytest.mark.parametrize(
    "reason",
    [
        # Numbers of two scripts side by side, none a card number's groups.
        "\u062a\u0630\u0643\u0631\u0629 \u0664\u0664\u0661\u0661 ticket 4412",
        "\u0968\u0966\u0968\u096c-\u0967\u0967-\u0968\u0966 to 2026-11-24",
        "refunded \uff11,\uff12\uff15\uff10.00 on 2026-11-24; ticket #4411",
    ],
)
def test_numbers_of_two_scripts_are_kept(reason: str) -> None:
    assert check_reason(reason) == reason
