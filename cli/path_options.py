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

What could be a card number is what a usage error masks (``cli.usage_errors.shown_path``):
a stretch of ``CARD_DIGITS`` digits or more, in groups with anything but a letter between
them (``4539 1488 0343 6467``, ``4539/1488/0343/6467``), in the whole path as typed. A
name with a long timestamp (``20261125103000``) is refused alike, so the type is kept to
the options a card number is typed near: a bench report, a work directory or a wallet
directory is often named by a timestamp (``bench-$(date +%Y%m%d-%H%M%S).json``), and a
card number is no more likely there than in any other argument, whose usage errors are
masked (``cli.usage_errors``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.number_options import CARD_DIGITS
from cli.usage_errors import shown_path


def output_path(text: str) -> Path:
    """An option's path (``type=output_path``), or argparse's usage error when it could
    hold a card number (the module docstring); the path is not repeated."""
    if shown_path(text) != text:
        raise argparse.ArgumentTypeError(
            f"the path has {CARD_DIGITS} digits or more with no letter between them, which "
            "could be a card number, and no card number goes into a file's name: name it "
            "another way (a letter between the digits will do)"
        )
    return Path(text)
