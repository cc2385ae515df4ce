"""A settling's reason (``gateway.ledger.unanswered.check_reason``): ordinary text an
operator writes (times, dates, date ranges, tickets, amounts) is kept, and whatever could
be a card number, however its digits are separated, is refused.

Before, every stretch of text free of letters holding 13 digits or more was refused, Luhn
or not: a timestamp with its date, a date range, a list of tickets. And a letter that
shows nothing (a Hangul filler) or a modifier letter, typed between a card number's
groups, let it through. No card number is spelled out here (``tests.cards``).
"""

from __future__ import annotations

import pytest

from gateway.ledger import InvalidRequest
from gateway.ledger.unanswered import check_reason
from tests.cards import AMEX, NINETEEN_DIGITS, VISA, card, luhn_complete, wrong_check_digit

# The refusal's words before this change and since: what the old code fails is a refusal.
REFUSED = "no run of 13 or more digits"


def _groups(number: str, size: int = 4) -> list[str]:
    """``number`` in groups of ``size`` digits, as a card is typed."""
    return [number[i : i + size] for i in range(0, len(number), size)]


def _spaced(number: str, sep: str = " ") -> str:
    return sep.join(_groups(number))


def _in_script(number: str, zero: str) -> str:
    """``number`` in the digits of the script whose zero is ``zero``."""
    return "".join(chr(ord(zero) + int(digit)) for digit in number)


@pytest.mark.parametrize(
    "reason",
    [
        "merchant gone; decided 2026-11-24 14:30:05 UTC",
        "no answer 2026-11-20/2026-11-24",
        "tickets #4411, #4412, #4413, #4414",
        "refunded 1,250.00 on 2026-11-24",
        "called 2026-11-24 09:15:00, again 2026-11-24 10:45:30; gone",
        "tickets \uff034411 \uff034412 \uff034413 \uff034414",  # full-width number signs
        "batch 20261124=20261125 closed",
        # As long as a card number, and not one: it fails the Luhn check.
        f"ref {_spaced(wrong_check_digit(card('411111', 3)))}",
        f"ref {wrong_check_digit(VISA)}",
        "\u4f1a\u793e\u3005 2026-11-24",  # a modifier letter beside a date
    ],
)
def test_ordinary_text_with_digits_is_kept(reason: str) -> None:
    assert check_reason(reason) == reason


_NUMBER = card("411111", 3)


@pytest.mark.parametrize(
    "reason",
    [
        f"card {_NUMBER} disputed",
        *(
            f"card {_spaced(_NUMBER, sep)} disputed"
            for sep in (" ", ".", "/", ",", "_", "  ", " - ", "\u200b", ") (", "\u00a0", "|")
        ),
        # Letters that show nothing, and modifier letters, typed between the groups.
        *(
            f"card {_spaced(_NUMBER, sep)}"
            for sep in ("\u3164", "\uffa0", "\u115f", "\u1160", "\u02b0", "\u3005")
        ),
        f"card {_spaced(_NUMBER, chr(0x301))}",  # a combining mark
        f"card {_in_script(_NUMBER, chr(0xFF10))}",  # full-width digits
        f"card {_in_script(_NUMBER, chr(0x0660))}",  # Arabic-Indic digits
        # A card number with more typed beside it, in one stretch.
        f"card {_spaced(_NUMBER)} - 7 refunded",
        f"ref 12 {_NUMBER}",
        f"card {_NUMBER}{'12' * 4} glued",  # in a longer run
        f"card: {_spaced(_NUMBER)}",  # a colon ends the text before it, not the number
        f"ticket #4711 card {_spaced(_NUMBER)}",
        f"amex {' '.join([AMEX[:4], AMEX[4:10], AMEX[10:]])}",
        f"card {NINETEEN_DIGITS}",
        f"card {_spaced(luhn_complete('4' + '0' * 11))}",  # 13 digits
    ],
)
def test_whatever_could_be_a_card_number_is_refused(reason: str) -> None:
    with pytest.raises(InvalidRequest, match=REFUSED) as refused:
        check_reason(reason)
    assert _NUMBER[6:12] not in str(refused.value)
