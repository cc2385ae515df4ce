"""The characters a name given to a CA may hold: one rule, for the CA and for its requesters.

A merchant's or gateway's names reach places that show them as lines: ``setpay ca list``
(the listing an operator reads to pick what to revoke) and the logs. A control character
there forges lines (a newline) or moves the cursor; a line or paragraph separator breaks
a line too; a bidirectional control (a right-to-left override) turns a name around on
screen, so that one reads as another. Those are refused. Every other character is taken,
the other format characters (Unicode Cf) too: real names need them. A zero-width non-joiner
writes Persian words (U+200C), a zero-width joiner Indic conjuncts and emoji sequences
(U+200D), a soft hyphen marks where a long German word may break (U+00AD); none of them
moves text or breaks a line.

The Merchant CA applies the rule at registration and at renewal
(``setcore.registration_merchant.identity_of``); ``clients.merchant.config`` applies it at
start, so a name the CA would refuse is said before anything is sent.
"""

from __future__ import annotations

import unicodedata

# Controls (Cc), line separators (Zl), paragraph separators (Zp): each breaks a line or
# moves the cursor wherever the name is printed.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})

# The format characters that reorder text on screen (Unicode's Bidi_Control property):
# ALM, LRM and RLM, the embeddings and overrides LRE..RLO, the isolates LRI..PDI.
BIDI_CONTROLS = frozenset(
    {
        "\u061c",
        "\u200e",
        "\u200f",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
    }
)


def refused_character(text: str) -> str | None:
    """The first character of ``text`` no name may hold, or None when it has none."""
    for ch in text:
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return ch
    return None


def describe(ch: str) -> str:
    """``ch`` as a person reads it in an error: its code point and its Unicode name."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'control character')}"


__all__ = ["BIDI_CONTROLS", "describe", "refused_character"]
