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
``.json``: one stretch of 16 digits, whatever separates them, in any script), and one of
13 to 19 digits that pass the Luhn check is a card number: every real one does. A dated
tree of card files (``cards/2026/11/25/000123.json``,
``cards/branch-0042/2026-11-25/7.json``) is no longer read as one number across its
directories, and a timestamp of as many digits passes the check once in ten: a letter
between its parts (``2026-11-25T10-30-00``) lets any through.
The type is kept to the options a card number is typed near: a bench report or a work
directory named by a timestamp is everyday use, and a card number is no likelier there
than in any other argument, whose usage errors are masked.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid

# What ends a stretch of a path's part: a letter of any script (``card``, ``json``).
_LETTERS = re.compile(r"[^\W\d_]+")


def output_path(text: str) -> Path:
    """An option's path (``type=output_path``), or argparse's usage error when a part of it
    is a card number (the module docstring); the path is not repeated."""
    if any(_a_card_number(stretch) for part in text.split("/") for stretch in _LETTERS.split(part)):
        raise argparse.ArgumentTypeError(
            f"a part of the path holds {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits passing"
            " the Luhn check, which could be a card number, and no card number goes into a"
            " file's name: name it another way (a letter between the digits will do)"
        )
    return Path(text)


def _a_card_number(stretch: str) -> bool:
    """Whether the digits of ``stretch`` (any script's, read as 0-9) are a card number's."""
    digits = "".join(str(unicodedata.decimal(char)) for char in stretch if char.isdecimal())
    return MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS and luhn_valid(digits)
