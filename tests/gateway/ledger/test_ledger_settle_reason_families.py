"""A settling's reason (``gateway.ledger.unanswered.check_reason``) with a card number
written in digits of another family than a decimal script's (superscript, subscript,
circled, Hangzhou), or in two decimal scripts' (ASCII and full-width, as an input
method's toggle mixes them), with a digit of yet another family between its groups.

Before, only the decimal scripts were families: such a card number was read with its
separators as digits, or with half of its own digits blanked, and about one in six was
refused, by chance. And a superscript between the groups of a card number with one of its
digits itself a superscript was read as a digit with them, or blanked that digit. And a
reason with the digits of many scripts, each in a stretch of its own, had its every
stretch searched again for each. No card number is spelled out here (``tests.cards``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

import pytest

from cli.order_options import order_description
from gateway.ledger import InvalidRequest, reason_filter, reason_forms
from gateway.ledger.unanswered import check_reason
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid
from tests.cards import card

# The refusal's words (``tests.gateway.ledger.test_ledger_settle_reason``).
REFUSED = "no run of 13 or more digits"
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUBSCRIPTS = "₀₁₂₃₄₅₆₇₈₉"
_CIRCLED = "⓪①②③④⑤⑥⑦⑧⑨"
_DINGBATS = "⓿❶❷❸❹❺❻❼❽❾"
_HANGZHOU = "〇〡〢〣〤〥〦〧〨〩"
_FULL_WIDTH = "".join(chr(0xFF10 + value) for value in range(10))


def _groups(number: str) -> list[str]:
    """``number`` in groups of four digits, as a card is typed."""
    return [number[i : i + 4] for i in range(0, len(number), 4)]


def _written(number: str, digits: str) -> str:
    """``number`` with each digit written as ``digits`` writes it (zero first)."""
    return "".join(digits[int(digit)] for digit in number)


def _no_window_passes(digits: str) -> bool:
    """Whether no window of ``digits`` as long as a card number passes the Luhn check."""
    return not any(
        luhn_valid(digits[start : start + size])
        for size in range(MIN_PAN_DIGITS, min(MAX_PAN_DIGITS, len(digits)) + 1)
        for start in range(len(digits) - size + 1)
    )


# A card number whose groups, with a one between each two read as a digit, hold no window
# passing the Luhn check, nor its first fifteen digits: read so, or with its last digit
# blanked, it is found by no candidate, and refused only if it is read as it is typed.
_HIDDEN = next(
    number
    for number in (card("601100", serial * 7919) for serial in range(1000))
    if _no_window_passes("1".join(_groups(number))) and _no_window_passes(number[:-1])
)


def _refused(reason: str) -> None:
    with pytest.raises(InvalidRequest, match=REFUSED) as refused:
        check_reason(reason)
    assert not re.search(r"\d{3}", str(refused.value))


@pytest.mark.parametrize(
    ("digits", "separator"),
    [
        (_SUPERSCRIPTS, "\u0661"),
        (_SUPERSCRIPTS, "1"),
        (_SUPERSCRIPTS, "\uff11"),
        (_SUPERSCRIPTS, "①"),
        (_SUPERSCRIPTS, "\u200b\u0661\u200b"),
        (_SUBSCRIPTS, "\u07c1"),
        (_SUBSCRIPTS, "¹"),
        (_CIRCLED, "\u0661"),
        (_CIRCLED, "¹"),
        (_DINGBATS, "\u0661"),
        (_HANGZHOU, "1"),
        (_HANGZHOU, "\u0661"),
    ],
    ids=[
        "superscript, Arabic-Indic one",
        "superscript, ASCII one",
        "superscript, full-width one",
        "superscript, circled one",
        "superscript, Arabic-Indic one in zero-width spaces",
        "subscript, NKo one",
        "subscript, superscript one",
        "circled, Arabic-Indic one",
        "circled, superscript one",
        "negative circled, Arabic-Indic one",
        "Hangzhou, ASCII one",
        "Hangzhou, Arabic-Indic one",
    ],
)
def test_a_card_number_written_otherwise_with_a_digit_of_another_family_is_refused(
    digits: str, separator: str
) -> None:
    """Only a decimal script's digits were kept on their own: the card number's were
    blanked with the separators, or read as digits with them."""
    _refused(f"card {separator.join(_written(group, digits) for group in _groups(_HIDDEN))}")


def _ascii_and_full_width(group: str, first: int) -> str:
    """``group``'s digits in ASCII and full-width in turn, from ``first`` (0: ASCII)."""
    return "".join(
        digit if (index + first) % 2 == 0 else _FULL_WIDTH[int(digit)]
        for index, digit in enumerate(group)
    )


@pytest.mark.parametrize("separators", ["\u0661", "\u0661¹", "¹\u07c1"], ids=ascii)
def test_a_card_number_in_ascii_and_full_width_digits_with_others_between_is_refused(
    separators: str,
) -> None:
    """Typed as an input method's toggle mixes them, with an Arabic-Indic one between its
    groups: a form keeping one script's digits blanked half of the card number's, and
    the one keeping every script's read the separator as a digit."""
    groups = [_ascii_and_full_width(group, index) for index, group in enumerate(_groups(_HIDDEN))]
    reason = groups[0]
    for index, group in enumerate(groups[1:]):
        reason += separators[index % len(separators)] + group
    _refused(f"refund to {reason}, customer called")


def test_a_card_number_in_both_arabic_indic_scripts_with_an_nko_one_between_is_refused() -> None:
    """Typed on an Arabic and a Persian keyboard in turn, most of their digits alike."""
    digits = [chr((0x660, 0x6F0)[index % 2] + int(each)) for index, each in enumerate(_HIDDEN)]
    groups = ["".join(digits[start : start + 4]) for start in range(0, len(digits), 4)]
    _refused(f"card {chr(0x7C1).join(groups)}")


def test_a_card_number_in_ascii_and_full_width_groups_is_refused() -> None:
    groups = _groups(_HIDDEN)
    groups[1::2] = [_written(group, _FULL_WIDTH) for group in groups[1::2]]
    _refused(f"card {chr(0x661).join(groups)}")


@pytest.mark.parametrize(
    "between", ["¹", "\u200b¹\u200b", "①"], ids=["superscript", "in zero-width spaces", "circled"]
)
@pytest.mark.parametrize("at", ["last", "first"])
def test_a_superscript_between_the_groups_with_a_digit_written_so_is_refused(
    between: str, at: str
) -> None:
    """Read as a separator where digits stand on both sides of it, and as a digit at a
    number's edge: every other form read the separators as digits with the card number's
    own, or blanked that one with them."""
    reason = between.join(_groups(_HIDDEN))
    if at == "last":
        reason = reason[:-1] + _SUPERSCRIPTS[int(reason[-1])]
    else:
        reason = _CIRCLED[int(reason[0])] + reason[1:]
    _refused(f"card {reason} disputed")


@pytest.mark.parametrize(
    "reason",
    [
        # Numbers of two families side by side, none a card number's groups.
        "tickets 4411 4412 4413, see note¹ and note²",
        "refunded ¹²⁵⁰ of ³⁰⁰⁰ on 2026-11-24 ①②",
        "items ①②③ 4411 4412 ¹²",
        "\u0664\u0664\u0661\u0661 4412 ³",
    ],
)
def test_numbers_of_two_families_are_kept(reason: str) -> None:
    assert check_reason(reason) == reason


def _kept_digits(length: int) -> str:
    """``length`` digits no window of which passes the Luhn check, the next digit being
    the first that keeps it so."""
    digits = ""
    while len(digits) < length:
        digits += next(each for each in "0123456789" if _no_window_passes(digits[-18:] + each))
    return digits


def test_a_stretch_with_one_script_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reason with a digit of each of many scripts, each in a stretch of its own, and a
    long run of ASCII digits: the text was searched whole again for each script, twice
    (66 scripts' took over 100 ms for 4096 bytes). Now a stretch is searched again only
    if it holds the digits of two families or more: the text twice (as it is and in its
    NFKC form), and nothing more."""
    zeros = [char for char in map(chr, range(0x2000)) if unicodedata.digit(char, None) == 0]
    run = _kept_digits(200)
    reason = "".join(f"{chr(ord(zero) + 1)}: " for zero in zeros) + "¹: " * 13 + run
    searched: list[str] = []
    holds_one = reason_filter._holds_one

    def counting(text: str) -> bool:
        searched.append(text)
        return holds_one(text)

    monkeypatch.setattr(reason_filter, "_holds_one", counting)
    assert len(zeros) > 10
    assert not reason_filter.could_hold_a_card_number(reason)
    assert sum(map(len, searched)) <= 2 * len(reason)


# Seven families' digits (zero first): ASCII, Arabic-Indic, Devanagari, Bengali,
# full-width, superscript, circled.
_SEVEN = [
    "".join(chr(zero + value) for value in range(10)) for zero in (0x30, 0x660, 0x966, 0x9E6)
] + [_FULL_WIDTH, _SUPERSCRIPTS, _CIRCLED]


def _mixed(digits: str, families: list[str]) -> str:
    """``digits`` with a space after each, each written in one of ``families`` in turn."""
    return "".join(
        f"{_written(each, families[index % len(families)])} " for index, each in enumerate(digits)
    )


def test_a_stretch_mixing_more_families_than_any_text_is_refused_unsearched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stretch of a card number's length in digits of seven families, no card number in
    it, is refused without a form searched: each family was a form more, and a reason
    built with one digit of each of 112 families took some 0.4 s for 4096 bytes, as the
    ledger's write lock is held. Six families, as a paste may mix, are still searched and
    kept when no card is there."""
    searched: list[str] = []

    def recording(stretch: str) -> Iterator[str]:
        searched.append(stretch)
        return iter(())

    monkeypatch.setattr(reason_filter, "other_forms", recording)
    digits = _kept_digits(MIN_PAN_DIGITS)
    with pytest.raises(InvalidRequest, match=REFUSED):
        check_reason("tickets " + _mixed(digits, _SEVEN))
    assert searched == []
    check_reason("tickets " + _mixed(digits, _SEVEN[:6]))
    assert searched


@pytest.mark.parametrize(
    "numbers",
    [
        " ".join(family[7] for family in _SEVEN),
        "1 \u00b2 \u2083 \u2463 \u2164 \u0666 \uff17",
        _mixed(_kept_digits(MIN_PAN_DIGITS - 1), _SEVEN),
    ],
    ids=["seven digits", "seven with a Roman numeral", "one digit short of a card number"],
)
def test_a_stretch_mixing_many_families_too_short_for_a_card_number_is_kept(
    numbers: str,
) -> None:
    """Fewer digits than a card number's shortest, whatever their families, cannot be one:
    a stretch of seven families was refused unsearched however few digits it held, as a
    settling's reason and as an order's description (``cli.order_options``)."""
    reason = f"settled by hand, items {numbers}"
    assert check_reason(reason) == reason
    assert order_description(reason) == reason


def test_digits_nfkc_spells_count_toward_a_card_numbers_length() -> None:
    """A circled eleven is two digits in the forms (``reason_forms._spelled``): seven
    digits of seven families and three such numbers are thirteen, long enough to be
    refused unsearched, as their forms could hold a card number of that length."""
    short = " ".join(family[7] for family in _SEVEN)
    assert not reason_forms.too_mixed(f"{short} \u246a \u246b")
    assert reason_forms.too_mixed(f"{short} \u246a \u246b \u246c")
