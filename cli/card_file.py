"""The card file ``setpay bank open-account --card-out`` writes, parsed once for the two
commands that read it back: the bank's (``release-card``, ``issue-enrolment-code``:
``cli.bank_card_file``) and the wallet's (``register``, ``renew --card``: ``cli.wallet``).

A JSON object: ``pan``, text (read through ``str()``, a JSON number was taken for the
card number: a hand-edited file's, another program's; past 2**53 its digits not even
those written); ``expiry``, YYYYMM of a year no wallet, CA or gateway refuses
(``setcore.pan.check_expiry``); ``enrolment_code``, text, or absent for a card without
one. Two copies of these checks had drifted before they were one.

Each command reads the file itself (its own bound, its own words for a file it cannot
read), names it in its own words (``cli.usage_errors.shown_path``) and judges what only
it cares about (the wallet: whether the card has expired). A refusal here says what is
wrong and never a value: a file with its fields swapped would show the card number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from setcore.errors import SetcoreError
from setcore.pan import MAX_EXPIRY_YEAR, MIN_EXPIRY_YEAR, PAN, InvalidPAN, check_expiry

# A card file is three short fields; anything larger is the wrong file.
MAX_CARD_FILE_BYTES = 4096


@dataclass(frozen=True)
class CardFile:
    """A card file's fields, checked: ``enrolment_code`` None when the card has none."""

    pan: PAN
    expiry: str
    enrolment_code: str | None


class CardFileError(Exception):
    """Not a card file as ``open-account`` writes it. ``str()`` is the reason, naming
    neither the file nor a value. ``field``: the field at fault ("pan", "expiry"), or
    None for a file that is not a JSON object with a pan, an expiry and (if any) a text
    enrolment code. ``error``: the name of the error type that refused it, where one did
    (the JSON parser's, ``InvalidPAN``), for a caller that says that rather than the
    reason; the parser's text is never kept, as it could quote the card number."""

    def __init__(self, reason: str, *, field: str | None = None, error: str | None = None):
        super().__init__(reason)
        self.field = field
        self.error = error


def parse_card_file(data: bytes) -> CardFile:
    """The fields of a card file's bytes (read whole, within ``MAX_CARD_FILE_BYTES``);
    ``CardFileError`` if they are not a card file."""
    try:
        card = json.loads(data)
        if not isinstance(card, dict):
            raise TypeError("not a JSON object")
        number, expiry, code = card["pan"], card["expiry"], card.get("enrolment_code")
        if code is not None and not isinstance(code, str):
            raise TypeError("enrolment_code is not text")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        # Not chained, and its text not given: the parser's could hold the number.
        reason = "not a JSON object with a pan, an expiry and a text enrolment code"
        raise CardFileError(reason, error=type(exc).__name__) from None
    if not isinstance(number, str):
        raise CardFileError("its pan is not text (a JSON string of digits)", field="pan")
    try:
        pan = PAN(number)
    except InvalidPAN as exc:  # its messages never quote the digits
        raise CardFileError(str(exc), field="pan", error=type(exc).__name__) from None
    try:
        check_expiry(expiry if isinstance(expiry, str) else "")
    except SetcoreError:
        raise CardFileError(
            f"its expiry is not YYYYMM of a year from {MIN_EXPIRY_YEAR} to {MAX_EXPIRY_YEAR}",
            field="expiry",
        ) from None
    return CardFile(pan, expiry, code or None)
