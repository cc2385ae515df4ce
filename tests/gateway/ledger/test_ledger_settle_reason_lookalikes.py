"""A settling's reason (``gateway.ledger.unanswered.check_reason``) with a card number
hidden by what looks like nothing or like a separator: a digit of a script's own that is
no decimal one and looks like a bar or a dash (Kharoshthi, Rumi, Brahmi), a lookalike
letter, a character that shows nothing inside a group.

Before, the form reading a superscript or circled digit as its digit read such a numeral
as one too (``str.isdigit``), and every other form read it as a digit or blanked the
superscript: about half the card numbers so typed, the last digit a superscript, were
kept. That form was the text's NFKC form, too, which makes a lone lookalike letter (a
full-width or a script ``l``) an ASCII one, ending the stretch: with a Hangzhou numeral
between the other groups, about four in five were kept. And a zero-width space or a soft
hyphen inside a group split it, so that the groups were no longer laid out as a card
number's: with a security code or an expiry glued to the last, about two in three were
kept. No card number is spelled out here (``tests.cards``).
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from gateway.ledger import InvalidRequest
from gateway.ledger.unanswered import check_reason
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid
from tests.cards import VISA, card

# The refusal's words (``tests.gateway.ledger.test_ledger_settle_reason``).
REFUSED = "no run of 13 or more digits"
_DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
# Digits of a script's own, no decimal ones, the value one: a bar (Kharoshthi, Rumi), a
# dash (Brahmi), and two that look like letters (Ethiopic, New Tai Lue).
_STROKES = ("\U00010a40", "\U00010e60", "\U00011052", "\u1369", "\u19da")
# Letters NFKC makes an ASCII ``l``: full-width, script, small Roman fifty.
_LOOKALIKE_LETTERS = ("\uff4c", "\u2113", "\u217c")
# Characters that show nothing: zero-width space, word joiner, zero-width no-break space.
_INVISIBLE = ("\u200b", "\u2060", "\ufeff")
_HANGZHOU_ONE = "\u3021"


def _refused(reason: str) -> None:
    with pytest.raises(InvalidRequest, match=REFUSED) as refused:
        check_reason(reason)
    assert not re.search(r"\d{3}", str(refused.value))


def _groups(number: str) -> list[str]:
    """``number`` in groups of four digits, as a card is typed."""
    return [number[i : i + 4] for i in range(0, len(number), 4)]


def _last_written(groups: list[str], kind: str) -> list[str]:
    """``groups`` with the last digit written otherwise: ``kind`` ``SUPERSCRIPT`` or
    ``CIRCLED DIGIT``."""
    last = groups[-1]
    return [*groups[:-1], last[:-1] + unicodedata.lookup(f"{kind} {_DIGIT_NAMES[int(last[-1])]}")]


def _no_window_passes(digits: str) -> bool:
    """Whether no window of ``digits`` as long as a card number passes the Luhn check."""
    return not any(
        luhn_valid(digits[start : start + size])
        for size in range(MIN_PAN_DIGITS, min(MAX_PAN_DIGITS, len(digits)) + 1)
        for start in range(len(digits) - size + 1)
    )


def _name(char: str) -> str:
    return f"U+{ord(char):04X}"


@pytest.mark.parametrize("stroke", _STROKES, ids=_name)
@pytest.mark.parametrize("kind", ["SUPERSCRIPT", "CIRCLED DIGIT"])
def test_a_stroke_numeral_between_the_groups_is_refused(stroke: str, kind: str) -> None:
    """Read as a digit where the superscript is, blanked with it elsewhere, before."""
    assert stroke.isdigit() and not stroke.isdecimal()
    _refused(f"card {f' {stroke} '.join(_last_written(_groups(VISA), kind))} disputed")


# A card number whose groups, with a one between each two read as a digit, hold no window
# passing the Luhn check (``tests.gateway.ledger.test_ledger_settle_reason_scripts``).
_HIDDEN = next(
    number
    for number in (card("601100", serial * 7919) for serial in range(1000))
    if _no_window_passes("1".join(_groups(number)))
)


def test_a_stroke_numeral_between_the_groups_unspaced_is_refused() -> None:
    """Unspaced, the text is one group of 19 digits, none of its windows the number."""
    groups = _last_written(_groups(_HIDDEN), "SUPERSCRIPT")
    _refused(f"card {_STROKES[0].join(groups)}")


@pytest.mark.parametrize("letter", _LOOKALIKE_LETTERS, ids=_name)
@pytest.mark.parametrize("spaced", [False, True], ids=["unspaced", "spaced"])
def test_a_lookalike_letter_between_the_groups_is_refused(letter: str, spaced: bool) -> None:
    """A Hangzhou one between the other groups, the last digit a superscript: only the
    form reading a superscript as its digit and the numeral as a separator holds it,
    and the letter must not end its stretch there."""
    first, second, third, last = _last_written(_groups(VISA), "SUPERSCRIPT")
    gap = " " if spaced else ""
    one = f"{gap}{_HANGZHOU_ONE}{gap}"
    _refused(f"card {first}{one}{second}{gap}{letter}{gap}{third}{one}{last} disputed")


@pytest.mark.parametrize("invisible", _INVISIBLE, ids=_name)
def test_an_invisible_character_in_a_group_with_a_security_code_glued_is_refused(
    invisible: str,
) -> None:
    first, *rest = _groups(VISA)
    _refused(f"card {first[:2]}{invisible}{first[2:]} {' '.join(rest)}123 disputed")


def test_a_soft_hyphen_in_a_group_with_an_expiry_glued_is_refused() -> None:
    first, second, *rest = _groups(VISA)
    _refused(f"card {first} {second[:2]}\u00ad{second[2:]} {' '.join(rest)}1127 disputed")


def test_an_invisible_character_between_two_groups_is_still_refused() -> None:
    """They look as one group, but the groups it splits are still searched."""
    first, second, third, last = _groups(VISA)
    _refused(f"card {first}\u200b{second} {third} {last}123")


@pytest.mark.parametrize("spaced", [False, True], ids=["unspaced", "spaced"])
def test_a_dingbat_circled_digit_is_still_a_digit(spaced: bool) -> None:
    """NFKC leaves a dingbat circled digit as it is, but it is a digit written otherwise,
    not a stroke: read as its digit where the Hangzhou ones stand apart."""
    *groups, last = _groups(VISA)
    dingbat = unicodedata.lookup(f"DINGBAT NEGATIVE CIRCLED DIGIT {_DIGIT_NAMES[int(last[-1])]}")
    one = f" {_HANGZHOU_ONE} " if spaced else _HANGZHOU_ONE
    _refused(f"card {one.join([*groups, last[:-1] + dingbat])}")


def test_a_circled_number_of_two_digits_is_still_read() -> None:
    """The whole text's NFKC form is no longer searched with the superscript read as its
    digit and the numeral apart: ``U+246A`` is still ``11`` there."""
    number = card("411111", 21)
    assert number.endswith("11")
    first, second, third, last = _groups(number)
    superscript = unicodedata.lookup(f"SUPERSCRIPT {_DIGIT_NAMES[int(first[-1])]}")
    one = f" {_HANGZHOU_ONE} "
    _refused(f"card {first[:-1]}{superscript}{one}{second}{one}{third}{one}{last[:2]}\u246a")


@pytest.mark.parametrize(
    "reason",
    [
        "tickets 4411 \uff4c 5520 \u2113 6631 \u217c 7742",
        "order 2026\u200b1124, ticket 4411",
        "ref \U00010a40 2026-11-24 \U00010e60 4411 \U00011052 20261125",
        "called 2026-11-24\u00ad, ticket 4411\ufeff",
    ],
)
def test_ordinary_text_with_lookalikes_is_kept(reason: str) -> None:
    assert check_reason(reason) == reason
