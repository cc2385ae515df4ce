"""The enrolment code: the secret an issuer hands a cardholder with the card (SET's
"mailer"), which the Cardholder CA asks for before it certifies the card.

A code is ``ENROLMENT_CODE_BITS`` random bits written as ``ENROLMENT_CODE_CHARS``
characters of Crockford's base32 in groups of ``GROUP_CHARS`` (``7K3M-Q9TX-...``): no
I, L, O or U, read back case-insensitively with I and L taken as 1 and O as 0, so a
person copying it from paper gets it right. The ledger keeps only a keyed hash of it
(``pan.enrolment_code_hash``), compared in constant time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.ledger.accounts import CardAccount

# 80 bits: a guesser with a card number and its expiry still faces 2^80 codes, so the CA
# need not lock the card after a few wrong tries (whoever knows the number could then
# keep its holder from registering), and 16 base32 characters are short enough to type.
ENROLMENT_CODE_BITS = 80
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BITS_PER_CHAR = 5
ENROLMENT_CODE_CHARS = ENROLMENT_CODE_BITS // _BITS_PER_CHAR
# Groups of four read and type like a licence key.
GROUP_CHARS = 4
# Read back as the letters people mistake them for (Crockford's rule).
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
# What a person may type between groups.
_SEPARATORS = str.maketrans("", "", "- ")


def new_enrolment_code() -> str:
    """A fresh random code, grouped for printing on the card's letter."""
    value = secrets.randbits(ENROLMENT_CODE_BITS)
    chars = "".join(
        _ALPHABET[(value >> (_BITS_PER_CHAR * i)) & 0x1F] for i in range(ENROLMENT_CODE_CHARS)
    )
    return "-".join(chars[i : i + GROUP_CHARS] for i in range(0, len(chars), GROUP_CHARS))


def normalize_enrolment_code(text: str) -> str | None:
    """The code's canonical form (upper case, no separators), or None for text that is
    no code: the caller treats that as a wrong code, never says why."""
    canonical = text.upper().translate(_SEPARATORS).translate(_READ_AS)
    if len(canonical) != ENROLMENT_CODE_CHARS or any(c not in _ALPHABET for c in canonical):
        return None
    return canonical


@dataclass(frozen=True)
class CardEnrolment:
    """A card account as a registration sees it: whether it has an enrolment code, and
    whether the one given matches (always False for a card without one)."""

    account: CardAccount
    has_code: bool
    code_matches: bool


__all__ = [
    "ENROLMENT_CODE_BITS",
    "ENROLMENT_CODE_CHARS",
    "CardEnrolment",
    "new_enrolment_code",
    "normalize_enrolment_code",
]
