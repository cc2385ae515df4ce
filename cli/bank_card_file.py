"""The card a ``setpay bank`` command names (``release-card``, ``issue-enrolment-code``,
``open-account --pan-file``): its PAN file, or the card file ``open-account --card-out``
wrote, read as that command writes it.

A card file is parsed as the wallet parses it (``cli.card_file``): its ``pan`` text, its
``expiry`` YYYYMM of a year no wallet, CA or gateway refuses, its enrolment code (if any)
text, as every card file ``open-account`` writes holds: one that does not is the wrong
file, or a damaged one, though neither command uses the expiry or the code. A refusal
names the file and what is wrong, never a value: a file with its fields swapped would
show the card number. It names the file as typed, but for a card number in it
(``cli.usage_errors.shown_path``): the option is ``--card``, and the number typed for the
file was said whole ("cannot read --card 4539...: No such file or directory").
"""

from __future__ import annotations

from pathlib import Path

from cli.card_file import MAX_CARD_FILE_BYTES, CardFileError, parse_card_file
from cli.usage_errors import shown_path
from setcore.pan import PAN

# A PAN file holds at most 19 digits and a newline; anything longer is the wrong file.
MAX_PAN_FILE_BYTES = 64


class BankCommandError(Exception):
    """A bank command cannot run as given (its message names the option or file)."""


def read_pan(path: Path) -> PAN:
    """The PAN the operator chose, from ``--pan-file``."""
    raw = _read(path, "--pan-file", MAX_PAN_FILE_BYTES, "to hold a PAN")
    # InvalidPAN's messages never quote the digits.
    return PAN(raw.decode("ascii", errors="replace").strip())


def read_card_pan(path: Path) -> PAN:
    """The PAN of a card file (``open-account --card-out``), from ``--card``."""
    raw = _read(path, "--card", MAX_CARD_FILE_BYTES, "to be a card file")
    name = shown_path(path)
    try:
        return parse_card_file(raw).pan
    except CardFileError as exc:
        # The JSON parser's error by its type alone; every other by its reason.
        said = f": {exc}" if exc.field is not None else f" ({exc.error})"
        raise BankCommandError(f"--card {name} is not a card file{said}") from None


def _read(path: Path, option: str, most: int, what: str) -> bytes:
    """The whole of the file ``option`` names, at most ``most`` bytes: BankCommandError,
    naming it (``shown_path``), if it cannot be read or is longer (too large ``what``)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(most + 1)
    except OSError as exc:
        raise BankCommandError(f"cannot read {option} {shown_path(path)}: {exc.strerror}") from None
    if len(raw) > most:
        raise BankCommandError(f"{option} {shown_path(path)} is too large {what}")
    return raw
