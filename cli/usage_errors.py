"""A usage error's message with no card number in it (``without_card_numbers``), for every
parser of the ``setpay`` command (``cli.main._Parser``).

argparse repeats what was typed: ``unrecognized arguments: 1111 1111 1111`` (the words
it could not place, joined by spaces), ``invalid choice: '4111-1111-...'``, ``invalid
int value: '...'``. A card number typed into the wrong place, in one word or in its
groups, was so written on standard error, whole or in part, where a terminal's
scrollback, a cron mail or a CI log keeps it; no PAN goes into an error.

A stretch of the message is digits (of any script) in groups, with what is typed between
a card number's groups between them: spaces, dashes, dots, slashes, commas, underscores,
invisible characters, and the escapes ``repr`` writes for those that do not print
(``\\xa0``, ``\\u200b``, ``\\t``): a card number copied from a web page has no-break
spaces. Any other character ends it. A stretch's digits are masked in place (its
separators stay) as ``setcore.pan.mask_pan`` masks a card number's, when it could be a
card number or the rest of one:

- ``CARD_DIGITS`` digits or more, however grouped;
- ``REST_DIGITS`` or more in two groups or more: the rest of a card number typed in its
  groups whose first group an option took (``--amount 4111 1111 1111 1111`` leaves three
  unrecognized, 12 digits; a 13-digit card leaves 9).

A stretch longer than a card number (one with its expiry or security code typed after it)
shows no digit. One run shorter than a card number is kept: a bound (``2147483647``), an
amount, an id.

Every such stretch, not only one passing the Luhn check, unlike a settling's reason
(``gateway.ledger.reason_filter``), which is refused outright and so must let ordinary
text through: the rest of a card number has no check digit of its own, a card number
mistyped by one digit fails the check and is still nearly all of it, and the message is
for the person who typed the command, who loses nothing by seeing it masked.

``setcore.pan`` is imported only when a message has a stretch to mask: it loads the
protocol's messages (protobuf), which ``setpay --help``, a wrong subcommand's refusal and
``setpay keys`` do without (``cli.main``: a library that fails to import breaks only the
commands that use it). Should it fail to import, the stretch shows no digit at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cli.number_options import CARD_DIGITS

# A card number's first group as it is typed and printed (4-4-4-4, 4-6-5, 4-6-4): what an
# option takes of one typed in groups into its value, leaving the rest unplaced.
FIRST_GROUP_DIGITS = 4
REST_DIGITS = CARD_DIGITS - FIRST_GROUP_DIGITS
# The escapes ``repr`` writes for a character that does not print (argparse quotes a
# refused value with ``%r``): a no-break space is ``\xa0``, a zero-width one ``\u200b``.
_ESCAPE = r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[tnrfv])"
# What may stand between a card number's groups: white space of any width (argparse joins
# the words it could not place with one), dashes and minus signs, dots, slashes, commas,
# underscores, a soft hyphen and the zero-width characters.
_SEPARATOR = r"[\s\-./,_\u00ad\u2010-\u2015\u2212\u200b-\u200d\u2060\ufeff]"
# The message read piece by piece: an escape (whose hex digits are no digits typed), one
# digit, one separator, any other character.
_PIECE = re.compile(
    rf"(?P<escape>{_ESCAPE})|(?P<digit>\d)|(?P<separator>{_SEPARATOR})|(?P<other>.)", re.DOTALL
)


def without_card_numbers(message: str) -> str:
    """``message`` with the digits of each stretch that could be a card number, or the rest
    of one, masked (the module docstring)."""
    pieces = [match.group() for match in _PIECE.finditer(message)]
    for digits in _stretches(message):
        shown = _masked("".join(pieces[index] for index in digits))
        for index, char in zip(digits, shown, strict=True):
            pieces[index] = char
    return "".join(pieces)


def _stretches(message: str) -> Iterator[list[int]]:
    """The pieces (``_PIECE``, by index) that are the digits of each stretch to mask."""
    digits: list[int] = []
    groups = 0
    after_digit = False
    for index, match in enumerate(_PIECE.finditer(message)):
        if match.lastgroup == "digit":
            groups += not after_digit
            digits.append(index)
            after_digit = True
            continue
        after_digit = False
        if match.lastgroup == "other":
            if _could_be_a_card_number(len(digits), groups):
                yield digits
            digits, groups = [], 0
    if _could_be_a_card_number(len(digits), groups):
        yield digits


def _could_be_a_card_number(digits: int, groups: int) -> bool:
    """Whether a stretch of ``digits`` in ``groups`` could be a card number or its rest."""
    return digits >= CARD_DIGITS or (groups > 1 and digits >= REST_DIGITS)


def _masked(digits: str) -> str:
    """``digits`` as ``mask_pan`` shows them (as many characters), or all hidden when they
    are more than a card number's or ``setcore.pan`` cannot be imported."""
    try:
        from setcore.pan import MAX_PAN_DIGITS, mask_pan  # noqa: PLC0415 - the module docstring
    except Exception:  # noqa: BLE001 - a usage error is still said, and still masked
        return "*" * len(digits)
    if len(digits) > MAX_PAN_DIGITS:
        return "*" * len(digits)
    return mask_pan(digits)
