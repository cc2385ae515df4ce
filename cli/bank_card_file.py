"""The card a ``setpay bank`` command names (``release-card``, ``issue-enrolment-code``,
``open-account --pan-file``): its PAN file, or the card file ``open-account --card-out``
wrote, read as that command writes it.

A card file's ``pan`` is text: read through ``str()``, a JSON number was taken for the
card number (a hand-edited file's, another program's; past 2**53 its digits not even
those written). Its ``expiry`` is YYYYMM of a year no wallet, CA or gateway refuses
(``setcore.pan.check_expiry``), as every card file ``open-account`` writes holds: one
that does not is the wrong file, or a damaged one, though neither command uses it. A
refusal names the file and what is wrong, never a value: a file with its fields swapped
would show the card number. It names the file as typed, but for a card number in it
(``cli.usage_errors.shown_path``): the option is ``--card``, and the number typed for the
file was said whole ("cannot read --card 4539...: No such file or directory").
"""

from __future__ import annotations

import json
from pathlib import Path

from cli.usage_errors import shown_path
from setcore.errors import SetcoreError
from setcore.pan import MAX_EXPIRY_YEAR, MIN_EXPIRY_YEAR, PAN, InvalidPAN, check_expiry

# A PAN file holds at most 19 digits and a newline; anything longer is the wrong file.
MAX_PAN_FILE_BYTES = 64
# A card file (``open-account --card-out``) is three short fields; anything larger is the
# wrong file.
MAX_CARD_FILE_BYTES = 4096


class BankCommandError(Exception):
    """A bank command cannot run as given (its message names the option or file)."""


def read_pan(path: Path) -> PAN:
    """The PAN the operator chose, from ``--pan-file``."""
    name = shown_path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PAN_FILE_BYTES + 1)
    except OSError as exc:
        raise BankCommandError(f"cannot read --pan-file {name}: {exc.strerror}") from None
    if len(raw) > MAX_PAN_FILE_BYTES:
        raise BankCommandError(f"--pan-file {name} is too large to hold a PAN")
    # InvalidPAN's messages never quote the digits.
    return PAN(raw.decode("ascii", errors="replace").strip())


def read_card_pan(path: Path) -> PAN:
    """The PAN of a card file (``open-account --card-out``), from ``--card``."""
    name = shown_path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CARD_FILE_BYTES + 1)
    except OSError as exc:
        raise BankCommandError(f"cannot read --card {name}: {exc.strerror}") from None
    if len(raw) > MAX_CARD_FILE_BYTES:
        raise BankCommandError(f"--card {name} is too large to be a card file")
    try:
        card = json.loads(raw)
        if not isinstance(card, dict):
            raise TypeError("not a JSON object")
        number, expiry = card["pan"], card["expiry"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        # Not chained, and the value not quoted: the parser's text could hold the number.
        raise BankCommandError(f"--card {name} is not a card file ({type(exc).__name__})") from None
    if not isinstance(number, str):
        raise BankCommandError(
            f"--card {name} is not a card file: its pan is not text (a JSON string of digits)"
        )
    try:
        pan = PAN(number)
    except InvalidPAN as exc:  # its messages never quote the digits
        raise BankCommandError(f"--card {name} is not a card file: {exc}") from None
    try:
        check_expiry(expiry if isinstance(expiry, str) else "")
    except SetcoreError:
        raise BankCommandError(
            f"--card {name} is not a card file: its expiry is not YYYYMM of a year from "
            f"{MIN_EXPIRY_YEAR} to {MAX_EXPIRY_YEAR}"
        ) from None
    return pan
