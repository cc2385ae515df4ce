"""A usage error's message with no card number in it (``without_card_numbers``), for every
parser of the ``setpay`` command (``cli.main._Parser``); and a file's path as a refusal
names it (``shown_path``).

argparse repeats what was typed: ``unrecognized arguments: 1111 1111 1111`` (the words
it could not place, joined by spaces), ``invalid choice: '4111-1111-...'``, ``invalid
int value: '...'``. A card number typed into the wrong place, in one word or in its
groups, was so written on standard error, whole or in part, where a terminal's
scrollback, a cron mail or a CI log keeps it; no PAN goes into an error.

A stretch of the message is digits (of any script) in groups, with anything but a letter
between them: a card number is typed with spaces, dashes, dots or slashes between its
groups, copied from a web page with no-break spaces, from a right-to-left page with
direction marks, and typed through a Japanese input method with fullwidth hyphens or
middle dots. A list of separators missed each one it did not name, and the card went out
whole; a letter ends a stretch, and an escape ``repr`` writes for a character that does
not print (``\\xa0``, ``\\u200e``, ``\\t``: argparse quotes a refused value with ``%r``)
stands between groups as the character would. A stretch's digits are masked in place (its
separators stay) as ``setcore.pan.mask_pan`` masks a card number's, when it could be a
card number or the rest of one:

- ``CARD_DIGITS`` digits or more, however grouped;
- ``REST_DIGITS`` or more in two groups or more: the rest of a card number typed in its
  groups whose first group an option took (``--amount 4111 1111 1111 1111`` leaves three
  unrecognized, 12 digits; a 13-digit card leaves 9).

A stretch longer than a card number (one with its expiry or security code typed after it)
shows no digit. One run shorter than a card number is kept: a bound (``2147483647``), an
amount, an id. Numbers only punctuation separates are masked with the rest (an address
``192.168.100.200``, a date with its time): the message is for the person who typed them.

The message alone cannot tell the rest of a card in one word (``--description 4539
148803436467`` leaves ``148803436467`` unrecognized) nor its last two groups (``capture
--amount 4539 1488 0343 6467``: the option and the order each take one, ``0343 6467``
is left) from a number. The command line can: the words the parser was given (``typed``)
are read as one line, and each of their stretches that could be a card number, read as
one (its words' digits joined, ``CARD_DIGITS`` or more), gives its runs of digits with
how the card's mask shows them (``148803436467`` as ``14******6467``). A run of the
message the rule above kept, that is one of those runs, is masked so.

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
from collections.abc import Iterable, Iterator, Sequence

from cli.number_options import CARD_DIGITS

# A card number's first group as it is typed and printed (4-4-4-4, 4-6-5, 4-6-4): what an
# option takes of one typed in groups into its value, leaving the rest unplaced.
FIRST_GROUP_DIGITS = 4
REST_DIGITS = CARD_DIGITS - FIRST_GROUP_DIGITS
# The escapes ``repr`` writes for a character that does not print (argparse quotes a
# refused value with ``%r``): a no-break space is ``\xa0``, a zero-width one ``\u200b``.
_ESCAPE = r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[tnrfv])"
# The text read piece by piece: an escape (whose hex digits are no digits typed), one
# digit, one letter (of any script: what ends a stretch), any other character (what may
# stand between a card number's groups).
_PIECE = re.compile(
    rf"(?P<escape>{_ESCAPE})|(?P<digit>\d)|(?P<letter>[^\W\d_])|(?P<separator>.)", re.DOTALL
)


def without_card_numbers(message: str, typed: Sequence[str] = ()) -> str:
    """``message`` with the digits of each stretch that could be a card number, or the rest
    of one, masked, and of each run of digits a card number among the command line's words
    ``typed`` holds (the module docstring)."""
    pieces, masked = _stretches_masked(message, rest=True)
    typed_runs = _typed_runs(typed)
    if typed_runs:
        for run in _runs(_digits(message)):
            shown = typed_runs.get("".join(pieces[index] for index in run))
            if shown is not None and run[0] not in masked:
                _put(pieces, run, shown)
    return "".join(pieces)


def shown_path(path: object) -> str:
    """A file's path as a refusal names it, the digits of a card number in it masked.

    An option that takes a file (``--card``, ``--pan-file``, ``--initiation``) is given
    the card number itself by mistake, and a refusal naming the file named the card:
    "cannot read --card 453914******6467". Only a stretch of a card number's digits or
    more is masked, not the rest of one: the card is whole in the one word, and a path's
    date (``cards/2026-11-25.json``) stays readable."""
    pieces, _ = _stretches_masked(str(path), rest=False)
    return "".join(pieces)


def _stretches_masked(text: str, *, rest: bool) -> tuple[list[str], set[int]]:
    """``text``'s pieces (``_PIECE``), each stretch that could be a card number (or, with
    ``rest``, its rest) masked; and the indexes of the digits masked."""
    pieces = [match.group() for match in _PIECE.finditer(text)]
    masked: set[int] = set()
    for digits in _stretches(text, rest=rest):
        _put(pieces, digits, _masked("".join(pieces[index] for index in digits)))
        masked.update(digits)
    return pieces, masked


def _typed_runs(words: Sequence[str]) -> dict[str, str]:
    """Each run of digits of a card number the command line's ``words`` hold, read as one
    line, with how the card's mask shows it; a run that two places show differently (a
    card of repeated groups) shows only the digits both do."""
    line = " ".join(words)
    typed = [match.group() for match in _PIECE.finditer(line)]
    shown, _ = _stretches_masked(line, rest=False)
    runs: dict[str, str] = {}
    for run in _runs(_digits(line)):
        digits, mask = "".join(typed[i] for i in run), "".join(shown[i] for i in run)
        if mask != digits:  # in a card number, and not all of it shown
            seen = runs.get(digits, mask)
            runs[digits] = "".join(
                "*" if "*" in pair else pair[0] for pair in zip(mask, seen, strict=True)
            )
    return runs


def _digits(text: str) -> list[int]:
    """The pieces (``_PIECE``, by index) of ``text`` that are digits."""
    return [
        index for index, match in enumerate(_PIECE.finditer(text)) if match.lastgroup == "digit"
    ]


def _runs(digits: Iterable[int]) -> Iterator[list[int]]:
    """The indexes ``digits`` in runs of consecutive ones: a number's digits, nothing
    between them."""
    run: list[int] = []
    for index in digits:
        if run and index != run[-1] + 1:
            yield run
            run = []
        run.append(index)
    if run:
        yield run


def _put(pieces: list[str], indexes: list[int], shown: str) -> None:
    for index, char in zip(indexes, shown, strict=True):
        pieces[index] = char


def _stretches(text: str, *, rest: bool) -> Iterator[list[int]]:
    """The pieces (``_PIECE``, by index) that are the digits of each stretch to mask: one
    of a card number's digits or more, or with ``rest`` also the rest of one."""
    digits: list[int] = []
    groups = 0
    after_digit = False
    for index, match in enumerate(_PIECE.finditer(text)):
        if match.lastgroup == "digit":
            groups += not after_digit
            digits.append(index)
            after_digit = True
            continue
        after_digit = False
        if match.lastgroup == "letter":
            if _could_be_a_card_number(len(digits), groups if rest else 0):
                yield digits
            digits, groups = [], 0
    if _could_be_a_card_number(len(digits), groups if rest else 0):
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
