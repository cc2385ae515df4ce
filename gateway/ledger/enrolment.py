"""The enrolment code: the secret an issuer hands a cardholder with the card (SET's
"mailer"), which the Cardholder CA asks for before it certifies the card.

The issuer makes a code here (``new_enrolment_code``); its written form (Crockford's
base32 in groups, read back by ``normalize_enrolment_code``) is
``setcore.enrolment_code``'s, which the wallet and the merchant share to keep a code out
of what they print. The ledger keeps only a keyed hash of a code
(``pan.enrolment_code_hash``), compared in constant time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.ledger.accounts import CardAccount
from setcore.enrolment_code import (
    ALPHABET,
    BITS_PER_CHAR,
    ENROLMENT_CODE_BITS,
    ENROLMENT_CODE_CHARS,
    GROUP_CHARS,
    normalize_enrolment_code,
)


def new_enrolment_code() -> str:
    """A fresh random code, grouped for printing on the card's letter."""
    value = secrets.randbits(ENROLMENT_CODE_BITS)
    chars = "".join(
        ALPHABET[(value >> (BITS_PER_CHAR * i)) & 0x1F] for i in range(ENROLMENT_CODE_CHARS)
    )
    return "-".join(chars[i : i + GROUP_CHARS] for i in range(0, len(chars), GROUP_CHARS))


@dataclass(frozen=True)
class CardEnrolment:
    """A card account as a registration sees it: whether it has an enrolment code, and
    whether the one given matches (always False for a card without one)."""

    account: CardAccount
    has_code: bool
    code_matches: bool


# The written form's names stay importable from here, where the ledger and the bank's
# commands have always found them: the same objects, not a copy.
__all__ = [
    "ENROLMENT_CODE_BITS",
    "ENROLMENT_CODE_CHARS",
    "CardEnrolment",
    "new_enrolment_code",
    "normalize_enrolment_code",
]
