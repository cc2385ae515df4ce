"""The argparse type of the option naming the file a card's data is written into
(``output_path``): ``bank open-account --card-out`` and ``issue-enrolment-code
--card-out``.

A card number typed there by mistake (the card, not its file, in mind) was taken as the
path: ``open-account --card-out 4539...`` wrote the new card's data into a file named by
the card number, and said "card data in 4539...". A file's name is listed by ``ls``,
kept by backups and shell histories, and said by the command itself: no PAN goes there
(the design keeps it sealed, in the ledger, or in the card file's content). Such a path
is refused as a usage error (exit 2), before anything is made, opened or changed, and
without repeating it.

What is refused is narrower than what a usage error masks (``cli.usage_errors``), which
only hides digits and so may hide a date too: a refusal stops the command. A part of the
path (between slashes) is read in stretches that only a letter ends (a card number in
groups of four with spaces or dashes between them, or whole after ``card-`` and before
``.json``, in any script), and a stretch's digits in groups (the runs with nothing
between their digits). A stretch holds a card number if one of its candidates, 13 to 19
digits, passes the Luhn check, as every real one does: the candidates a settling's reason
is searched for (``gateway.ledger.reason_filter``), each run of whole groups, each window
within one group, and groups laid out as a card's first ones with a longer one after
them. Once, the stretch's digits were checked only all together, and a card number with
other digits beside it and no letter between them was taken, into the file's name and
the command's own line: ``cards/2026-11-25_4539....json``, ``cards/4539..._1.json``,
``cards/4539... (2).json``.

A dated tree of card files (``cards/2026/11/25/000123.json``,
``cards/branch-0042/2026-11-25/7.json``) is not read as one number across its
directories, and is taken. A timestamp in one part, as many digits as a card number, is
refused as often as a candidate of it passes the check. Of a year of names, one a
minute: ``2026-11-25_103000`` and ``20261125-103000`` (one candidate, all their digits),
one in ten, as before; ``20261125103000`` (three: its 14 digits and two windows of 13),
28 in 100 rather than 10. A letter between its parts (``2026-11-25T10-30-00``) or a
slash (``2026-11-25/103000``) lets every one through; the message suggests the letter.
A part is judged as a settling's reason too (``could_hold_a_card_number``): a letter of
another script typed for a dash by an input method (``ー``, a Hangul filler) ended a
stretch here, and a card number in superscript or circled digits was taken; that
reading ends a stretch at ``:#;!?=``, which this one does not. Long timestamps of one
group are refused more often than those of a card number's length: 17 digits (seconds
and milliseconds) about three times in four, 19 or 20 digits nineteen in twenty, a
window of 13 to 19 of them passing the check.
The type is kept to the options a card number is typed near: a bench report or a work
directory named by a timestamp is everyday use, and a card number is no likelier there
than in any other argument, whose usage errors are masked.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

from cli.usage_errors import shown_path

# The reason filter's candidates, one rule for both: its place is setcore, beside
# ``setcore.pan``, as ``cli.order_options`` says of the filter; it moves there with it.
from gateway.ledger.reason_filter import _candidates as card_number_candidates
from gateway.ledger.reason_filter import could_hold_a_card_number
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid

# What ends a stretch of a path's part: a letter of any script (``card``, ``json``).
_LETTERS = re.compile(r"[^\W\d_]+")
# A group of a stretch: decimal digits of any script, nothing between them.
_GROUP = re.compile(r"\d+")


def output_path(text: str) -> Path:
    """An option's path (``type=output_path``), or argparse's usage error when a part of it
    holds a card number (the module docstring); the path is not repeated."""
    if any(_could_hold(part) for part in text.split("/")):
        raise argparse.ArgumentTypeError(
            f"a part of the path holds {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits passing"
            " the Luhn check, which could be a card number, and no card number goes into a"
            " file's name: name it another way (a letter between the digits will do)"
        )
    return Path(text)


def shown_output_path(path: Path) -> str:
    """How a command names an output path it took: as typed, unless its digits read
    across its slashes could be a card number (``4539/5787/...`` taken as directories),
    then masked as a refusal names a path (``cli.usage_errors.shown_path``). A dated tree
    (``cards/branch-0042/2026-11-25/7.json``) stays readable but once in ten or so, when
    its digits happen to pass the Luhn check."""
    text = str(path)
    return shown_path(text) if _could_hold(text) else text


def _could_hold(text: str) -> bool:
    """Whether ``text`` could hold a card number: a stretch of it that a letter ends
    (``_holds_a_card_number``), or as a settling's reason is judged, whose stretches a
    lone letter of another script does not end (``4539ー5787ー...``, a Japanese input
    method's long-vowel mark for a dash), nor superscript or circled digits hide."""
    return could_hold_a_card_number(text) or any(
        _holds_a_card_number(stretch) for stretch in _LETTERS.split(text)
    )


def _holds_a_card_number(stretch: str) -> bool:
    """Whether a candidate of ``stretch``'s digits (any script's, read as 0-9), as a
    settling's reason is searched (``reason_filter``), passes the Luhn check."""
    groups = [
        "".join(str(unicodedata.decimal(char)) for char in group)
        for group in _GROUP.findall(stretch)
    ]
    digits = "".join(groups)
    if len(digits) < MIN_PAN_DIGITS:
        return False
    return any(luhn_valid(digits[begin:end]) for begin, end in card_number_candidates(groups))
