"""How the reason filter (``gateway.ledger.reason_filter``) reads a digit, and the forms
of one stretch of text it searches besides the text itself: a digit typed between a card
number's groups in a family other than the card number's looks like a dash, a bar or a dot
(a Hangzhou numeral, an Arabic-Indic or NKo digit, a superscript), and read as a digit it
adds one to the groups, so that no candidate is the card number.

A digit's family (``_family``) is what it looks like written: a decimal script's digits
(by that script's zero: ASCII, full-width, Arabic-Indic each one), the superscripts, the
subscripts, the circled digits, and each script's numerals (Hangzhou, Roman, Kharoshthi,
by the first word of their names; the ideographic zero with the Hangzhou ones, as they are
written). Once, only the decimal scripts were families: a card number in superscript,
subscript, circled or Hangzhou digits with an ASCII or an Arabic-Indic one between its
groups was kept (51 in 300), and so was one typed in ASCII and full-width digits (as an
input method's toggle mixes them) with an Arabic-Indic one between its groups (36 to 51
in 300, each one-script form blanking half of it).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache

from setcore.pan import MIN_PAN_DIGITS

# How many characters' readings are kept (each form of a text reads every character once
# more): enough for the characters of the longest reason, bounded whatever is typed.
CACHED_CHARACTERS = 4096
# Characters passed over looking for a letter beside another: a combining mark belongs to
# the letter before it (a vowel sign too, spacing or not: a word of Devanagari is letters
# and vowel signs in turn), and a format character (a zero-width joiner) between two
# letters shows them side by side. A letter is part of a word when the next character
# either way, these passed over, is a letter that shows; a digit stands beside another
# (``_interior_apart``) the same way.
SHOW_NOTHING_BESIDE = frozenset({"Mn", "Mc", "Me", "Cf"})
# Number characters (not letters) that stand for one digit: the ideographic zero and the
# Hangzhou numerals, Roman numerals, circled ideographs. NFKC leaves most of them as they
# are (or makes them letters), so they are read by their value.
_NUMBER_CATEGORIES = frozenset({"Nl", "No"})
_ASCII_DIGITS = frozenset("0123456789")
# Digits written otherwise whose family is their compatibility tag (``_family``).
_WRITTEN_TAGS = frozenset({"<super>", "<sub>", "<circle>"})
# Decimal scripts whose digits are typed mixed, by their zeros: ASCII and full-width (an
# input method's toggle), Arabic-Indic and Extended Arabic-Indic (an Arabic and a Persian
# keyboard, most of their digits alike).
_TYPED_MIXED = (("0", "\uff10"), ("\u0660", "\u06f0"))
# A numeral whose name starts otherwise than its family's, written with it.
_FAMILY_OF = {"\u3007": "HANGZHOU"}


# Families of digits one stretch may mix and still be searched: ordinary text mixes two
# (a script's digits and ASCII), a paste a few more. A stretch of more, long enough to
# hold a card number, is refused unsearched (``too_mixed``), failing closed: each family
# is a form more, and a reason built with a digit of each of 112 families beside
# superscripts took 0.4 s for 4096 bytes, holding the ledger's write lock as it settles.
MAX_FAMILIES = 6


def other_forms(stretch: str) -> Iterator[str]:
    """Forms of ``stretch`` (one that nothing ending a number breaks) that may hold a card
    number it does not, each holding ``MIN_PAN_DIGITS`` digits or more; yielded more than
    once, or as the stretch itself, at times. If its digits are of one decimal script,
    none. Else, for all its decimal digits, for those of scripts typed mixed (ASCII and
    full-width, ``_TYPED_MIXED``), and for each family (``_family``) in turn: the
    stretch with every other digit read as a separator (``_apart``), and the same with
    the digits written otherwise kept (read as their digits, and what NFKC spells with
    digits so spelled, ``_spelled``). A card
    number in one family with another's digit between its groups is found in the first,
    one with a digit written otherwise among its digits (``4393〡6184〡3620〡467⁷``) in
    the second. Not the stretch with one family's digits read as separators, for each in
    turn: it kept the long run of a reason's ASCII digits once more for each family, and
    a reason of 4096 bytes with a digit of each of 80 families beside one took half a
    second; the card numbers it found (a card number in ASCII and full-width digits with
    an Arabic-Indic one between its groups) are found with ASCII and full-width read
    together, the other families' digits apart. And the stretch with each digit that
    is no decimal one read as a separator between two digits, and as its digit at a
    number's edge (``_interior_apart``): a superscript between a card number's groups,
    with one of its digits itself a superscript (``6083¹778353¹374⁰``), is read as a
    digit in every other form or blanks that digit with the separators."""
    counts = Counter(stretch)
    numbers = {char for char in counts if digit(char) is not None}
    spelled = {ord(char): _spelled(char) for char in counts if _spelled(char)}
    families: dict[str, set[str]] = {}
    for char in numbers:
        families.setdefault(_family(char), set()).add(char)
    decimals = {char for char in numbers if char.isdecimal()}
    if len(families) < 2 and numbers == decimals and not spelled:
        return
    written = {char for char in numbers if _written_digit(char)}
    total = sum(counts[char] for char in numbers)
    spelled_digits = sum(counts[chr(code)] * _digits_within(chr(code)) for code in spelled)
    # Scripts typed mixed read together too (``_TYPED_MIXED``): a card number so typed,
    # with another family's digits between its groups (an Arabic-Indic one, or that and
    # a superscript), was kept by every other form (36 to 51 in 300).
    mixed = [set().union(*(families.get(zero, ()) for zero in zeros)) for zeros in _TYPED_MIXED]
    for kept in dict.fromkeys(map(frozenset, (decimals, *families.values(), *mixed))):
        if not kept:
            continue
        if sum(counts[char] for char in kept) >= MIN_PAN_DIGITS:
            yield _apart(stretch, numbers - kept)
        if sum(counts[char] for char in kept | written) + spelled_digits >= MIN_PAN_DIGITS:
            yield _apart(stretch, numbers - kept - written, spelled)
    if numbers != decimals and total >= MIN_PAN_DIGITS:
        yield _interior_apart(stretch, numbers - decimals)


def too_mixed(stretch: str) -> bool:
    """Whether ``stretch`` is refused with no form of it searched (``reason_filter``): its
    digits are of more than ``MAX_FAMILIES`` families (``_family``), and it holds
    ``MIN_PAN_DIGITS`` digits or more, those NFKC spells counted (``_digits_within``).
    Fewer cannot be a card number, nor make a form (``other_forms`` has none for it): it
    is judged as any other text. Once, the families alone were counted, and a reason of
    seven digits, one of each of seven families (ASCII, superscript, subscript, circled,
    Roman, Arabic-Indic, full-width), was refused."""
    counts = Counter(stretch)
    if len({_family(char) for char in counts if digit(char) is not None}) <= MAX_FAMILIES:
        return False
    return sum(counts[char] * _digits_within(char) for char in counts) >= MIN_PAN_DIGITS


def _apart(text: str, chars: Iterable[str], spelled: dict[int, str] | None = None) -> str:
    """``text`` with each of ``chars`` (number characters) a space, and each character
    ``spelled`` maps spelled so."""
    return text.translate({**(spelled or {}), **{ord(char): " " for char in chars}})


def _interior_apart(text: str, others: set[str]) -> str:
    """``text`` with each of ``others`` (digits that are no decimal one) a space where a
    digit stands on both sides of it (format characters and marks passed over), and its
    ASCII digit elsewhere: at a number's edge, it is more likely one of its digits."""
    return "".join(
        _read(text, index) if char in others else char for index, char in enumerate(text)
    )


def _read(text: str, index: int) -> str:
    """The character at ``index`` (a digit, ``digit``) read as a separator, a space, if a
    digit stands on both sides of it, else as its ASCII digit."""
    if _digit_beside(text, index, -1) and _digit_beside(text, index, 1):
        return " "
    return digit(text[index]) or " "


def _digit_beside(text: str, index: int, step: int) -> bool:
    """Whether the next character from ``index`` the way ``step`` goes (marks and format
    characters passed over) is a digit (``digit``)."""
    index += step
    while 0 <= index < len(text) and unicodedata.category(text[index]) in SHOW_NOTHING_BESIDE:
        index += step
    return 0 <= index < len(text) and digit(text[index]) is not None


@lru_cache(maxsize=CACHED_CHARACTERS)
def _family(char: str) -> str:
    """The family of the digit ``char`` (``digit``), as it looks: a decimal script's by its
    zero, a superscript's, a subscript's or a circled one's by its compatibility tag, a
    numeral's by the first word of its name (a dingbat's by the next: ``❶`` is with
    ``⓿``)."""
    if char.isdecimal():
        return chr(_script(char))
    tag = unicodedata.decomposition(char).split(" ", 1)[0]
    if tag in _WRITTEN_TAGS:
        return tag
    words = unicodedata.name(char, "").removeprefix("DINGBAT ").split(" ", 1)
    return _FAMILY_OF.get(char, words[0])


@lru_cache(maxsize=CACHED_CHARACTERS)
def _written_digit(char: str) -> bool:
    """Whether ``char`` is a digit written otherwise, superscript, subscript, circled or
    parenthesized: no decimal digit, but one NFKC makes an ASCII digit or one circled
    (the dingbats, which NFKC leaves as they are). Not a digit of a script's own that is
    no decimal one (Kharoshthi, Rumi, Brahmi), which looks like a bar or a dash as a
    Hangzhou one does: kept as a digit, about half the card numbers with one between
    their groups were kept."""
    if not char.isdigit() or char.isdecimal():
        return False
    form = unicodedata.normalize("NFKC", char)
    return not _ASCII_DIGITS.isdisjoint(form) or "CIRCLED" in unicodedata.name(char, "")


@lru_cache(maxsize=CACHED_CHARACTERS)
def _spelled(char: str) -> str:
    """``char``'s NFKC form if it is no digit (``digit``) but NFKC spells it with ASCII
    digits and no letter (``U+246A``, ``U+2474``, a fraction); else nothing. Not the whole
    text's NFKC, which makes a lone lookalike letter (a full-width or a script ``l``) an
    ASCII one, ending the stretch: one between two groups hid them."""
    form = unicodedata.normalize("NFKC", char)
    if digit(char) is not None or _ASCII_DIGITS.isdisjoint(form):
        return ""
    return "" if any(each.isalpha() for each in form) else form


def _script(char: str) -> int:
    """The code point of the zero of the script whose decimal digit ``char`` is (each
    script's are ten in a row, zero first), to tell one script's digits from another's."""
    return ord(char) - unicodedata.digit(char)


@lru_cache(maxsize=CACHED_CHARACTERS)
def _digits_within(char: str) -> int:
    """How many digits ``char`` is read as, itself or in its NFKC form."""
    return max(
        digit(char) is not None,
        sum(digit(each) is not None for each in unicodedata.normalize("NFKC", char)),
    )


@lru_cache(maxsize=CACHED_CHARACTERS)
def digit(char: str) -> str | None:
    """The ASCII digit ``char`` stands for: a digit of any script (``str.isdigit``), or a
    number character whose value is one digit; None for any other character."""
    if char.isdigit():
        return str(unicodedata.digit(char, 0))
    if unicodedata.category(char) in _NUMBER_CATEGORIES:
        value = unicodedata.numeric(char, -1.0)
        if value.is_integer() and 0 <= value <= 9:
            return str(int(value))
    return None


__all__ = [
    "CACHED_CHARACTERS",
    "MAX_FAMILIES",
    "SHOW_NOTHING_BESIDE",
    "digit",
    "other_forms",
    "too_mixed",
]
