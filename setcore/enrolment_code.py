"""The enrolment code as it is written: the secret an issuer hands a cardholder with the
card (SET's "mailer"), which the Cardholder CA asks for before it certifies the card, and
which a person may type where it does not belong.

A code is ``ENROLMENT_CODE_BITS`` random bits written as ``ENROLMENT_CODE_CHARS``
characters of Crockford's base32 in groups of ``GROUP_CHARS`` (``7K3M-Q9TX-...``): no
I, L, O or U, read back case-insensitively with I and L taken as 1 and O as 0, so a
person copying it from paper gets it right. The issuer makes codes
(``gateway.ledger.enrolment``) and the CA reads them back (``normalize_enrolment_code``);
both take the written form from here, so there is one.

The wallet and the merchant take it from here too, to keep a code out of what they
print. A ``--form`` item without ``=``, or a field name the CA's form lacks, is refused,
and the refusal repeats it only when it is plainly a field name (``given_name``): letters
and hyphens, too few letters to be shaped like a code (``could_be_enrolment_code``) or to
hold one. About one code in 400 holds no digit (``BNJZ-TZXB-KRPV-EXSM``), so "it holds
no digit" is no sign that it is no code.
"""

from __future__ import annotations

import re

# 80 bits: a guesser with a card number and its expiry still faces 2^80 codes, so the CA
# need not lock the card after a few wrong tries (whoever knows the number could then
# keep its holder from registering), and 16 base32 characters are short enough to type.
ENROLMENT_CODE_BITS = 80
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BITS_PER_CHAR = 5
ENROLMENT_CODE_CHARS = ENROLMENT_CODE_BITS // BITS_PER_CHAR
# Groups of four read and type like a licence key.
GROUP_CHARS = 4
# Read back as the letters people mistake them for (Crockford's rule).
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
# What a person may type between groups.
_SEPARATORS = str.maketrans("", "", "- ")
# A form field's name is a label (setpay's CAs ask for "cardholder-name",
# "billing-postcode", "legal-name", "contact-email": 15 letters at most). One of fewer
# letters than a code has characters can neither be a code nor hold one within it
# ("code-BNJZ-TZXB-..."); a longer text given as a name is measured, not repeated.
MAX_SHOWN_NAME_LETTERS = ENROLMENT_CODE_CHARS - 1
# A field name as a refusal may repeat it: ASCII letters in words joined by hyphens. No
# digit (a card number, an account number, most codes), no ':' or '=' or space (a code
# pasted after its label, or a value), nothing a terminal would read as a control.
_PLAIN_NAME = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def normalize_enrolment_code(text: str) -> str | None:
    """The code's canonical form (upper case, no separators), or None for text that is
    no code: the caller treats that as a wrong code, never says why."""
    canonical = text.upper().translate(_SEPARATORS).translate(_READ_AS)
    if len(canonical) != ENROLMENT_CODE_CHARS or any(c not in ALPHABET for c in canonical):
        return None
    return canonical


def could_be_enrolment_code(text: str) -> bool:
    """Whether ``text`` is shaped like an enrolment code once its separators are dropped:
    ``ENROLMENT_CODE_CHARS`` ASCII letters and digits, in either case. Looser than
    ``normalize_enrolment_code`` on purpose: a code miscopied with a U (for V) is no
    code the CA takes, but 15 of its 16 characters are still the holder's secret. No
    refusal calls it: ``given_name``'s bound on a plain name's letters is set below a
    code's length so that nothing this takes for a code is ever repeated (its tests hold
    the two together)."""
    canonical = text.upper().translate(_SEPARATORS)
    return len(canonical) == ENROLMENT_CODE_CHARS and canonical.isascii() and canonical.isalnum()


def given_name(text: str) -> str:
    """``text``, given as a form field's name (or as a ``--form`` item without ``=``), as
    a refusal names it: quoted when it is plainly a field name, otherwise only its
    length. Plainly a name is ASCII letters in words joined by hyphens (``_PLAIN_NAME``),
    at most ``MAX_SHOWN_NAME_LETTERS`` of them: too few to be what
    ``could_be_enrolment_code`` takes for a code, or to hold one within. A card number or
    an enrolment code typed there by mistake would otherwise reach the terminal and the
    logs; a misspelt name is still named, and the CA's form lists its own names beside
    the refusal. The wallet and the merchant both refuse with this, so the rule cannot
    drift between them."""
    letters = len(text.replace("-", ""))
    if letters <= MAX_SHOWN_NAME_LETTERS and _PLAIN_NAME.fullmatch(text):
        return repr(text)
    return f"the {len(text)} characters given (not repeated: only a plain field name is)"


def unknown_field(text: str) -> str:
    """A form field ``text`` the CA's form lacks, as the refusal names it after "has no
    field": ``given_name``'s words, read as a field's name."""
    named = given_name(text)
    return named if named == repr(text) else f"named by {named}"


__all__ = [
    "ALPHABET",
    "BITS_PER_CHAR",
    "ENROLMENT_CODE_BITS",
    "ENROLMENT_CODE_CHARS",
    "GROUP_CHARS",
    "MAX_SHOWN_NAME_LETTERS",
    "could_be_enrolment_code",
    "given_name",
    "normalize_enrolment_code",
    "unknown_field",
]
