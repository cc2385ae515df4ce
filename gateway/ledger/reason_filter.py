"""Whether an operator's text could hold a card number (``could_hold_a_card_number``),
so that a settling's reason (``gateway.ledger.unanswered.check_reason``) never puts one
in the ledger, where it is kept for good and shown by every listing.

A card number is looked for in each stretch of the text that nothing ending a number
breaks: ``MIN_PAN_DIGITS`` to ``MAX_PAN_DIGITS`` digits passing the Luhn check, whatever
separates them (spaces, dots, slashes, commas, zero-width characters, blank fillers,
modifier letters). A stretch ends at a mark that ends a number as it is written
(``: # ; ! ? =``) and at a word: a letter with another beside it, or any ASCII letter. A
lone letter from elsewhere does not end it: one that looks like a dash or a bar (a
syllabics stroke, a click letter, a Hangul vowel, the ideograph for one) typed between a card
number's groups would hide it. An ASCII letter looks like none and stands between digits
in the ids a reason quotes (an RRPID or a digest in hex, a UUID, ``2026-11-24T143005Z``,
ticket ``T4411``): taken as a separator, nearly one reason in four quoting an RRPID would
be refused. A stretch's candidates: the digits of whole groups in a row (a card number is typed
in whole groups, with a ticket or an amount beside it as often as not), and every window
of a card number's length within one group of consecutive digits (a card number with its
security code or expiry glued on, or a digit before it). And a card number typed in its
groups with a security code or an expiry glued to its last: the groups laid out as a card
number's first ones are (``_LEADING``, at least three of four digits, or one of four and
one of six) with the first digits of a longer group that follows, ``MIN_PAN_DIGITS`` to
``MAX_PAN_DIGITS`` in all; once, that group was searched only on its own, too short to
hold one, and four in five such reasons were kept. Not any window across separators:
every list of three dates or four tickets would hold one passing the Luhn check (a window
from any group's start refused four lists of tickets in five, not one in five).

A digit is any a script writes (``str.isdigit``, by its value), and a number character
standing for one (the ideographic zero, Hangzhou or Roman numerals). The text's NFKC form
is searched as well: a circled or parenthesized number is a number there (``U+246A`` is
``11``). And the text with each number character that is no decimal digit read as a
separator (``_number_characters_apart``): a Hangzhou one looks like a bar, a Roman one like
an ``I``, the ideographic zero like an ``o``; typed between a card number's groups, one
read as a digit adds one to them, and no candidate is the card number (NFKC makes a Roman
numeral an ASCII letter, which ends the stretch, and leaves the others as they are): once,
seven card numbers in ten so separated were kept. This pass does not see such a separator
between digits themselves written as number characters (the ideographic zero for each
``0``).

What that leaves, as a trade-off. A colon or an equals sign between a card number's
groups ends the stretch, as it must for a time (``14:30:05``) or a pair (``a=b``) to be
kept; so does a word between them, two lookalike letters (a "dash" of two) or an ASCII
letter included. A digit glued to a grouped card number's first group is not looked
through, nor digits glued to the last group of one grouped otherwise than as cards are
printed (``_LEADING``). Digits written as Chinese numerals are not read, and a card
number so written is kept: one to nine (``U+4E00`` to ``U+4E5D``) are letters, not number
characters (only the zero, ``U+3007``, is one), and a run of them is a word that ends the
stretch; read as digits, they would have ordinary Chinese or Japanese text refused. And
ordinary text is refused now and then: a date range or a list of tickets with nothing but spaces,
commas, slashes or a one-letter word (not ASCII) between its numbers holds, about one
time in five, whole groups that pass the Luhn check; three numbers of four digits, or
one of four and one of six, followed by a longer one, about one time in two (a card
number with its security code glued on is typed just so); an id of 13 digits or more
typed whole, more often still (one of 14 digits about one time in four). The operator
rewords it (``from 2026-11-20 to 2026-11-24``, ``ticket #4411``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator

from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid

# Marks that end a number as it is written, so never sit inside a card number: a time's
# colon, a ticket's number sign, the end of a clause or sentence, an equals sign (their
# full-width forms too: ``_ends_a_stretch`` reads each character's NFKC form). Every other
# character but a word or an ASCII letter may separate a card number's digits: spaces of
# any width, dots, slashes, commas, hyphens, underscores, brackets, zero-width and
# combining characters, a lone letter.
_ENDS_A_NUMBER = frozenset(":#;!?=")
# Letters that show nothing (the Hangul fillers): typed between digits, they would hide a
# card number from a filter that ends a stretch at every letter.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# Characters passed over looking for a letter beside another: a combining mark belongs to
# the letter before it (a vowel sign too, spacing or not: a word of Devanagari is letters
# and vowel signs in turn), and a format character (a zero-width joiner) between two
# letters shows them side by side. A letter is part of a word when the next character
# either way, these passed over, is a letter that shows.
_SHOW_NOTHING_BESIDE = frozenset({"Mn", "Mc", "Me", "Cf"})
# Number characters (not letters) that stand for one digit: the ideographic zero and the
# Hangzhou numerals, Roman numerals, circled ideographs. NFKC leaves most of them as they
# are (or makes them letters), so they are read by their value.
_NUMBER_CATEGORIES = frozenset({"Nl", "No"})
# How a card number's groups are laid out before its last, as it is printed and typed:
# four digits each (16 and 19 digits, the first three or four of 4-4-4-4 and 4-4-4-4-3),
# or four then six (American Express's 4-6-5, Diners Club's 4-6-4). A group that follows
# such a run and is longer than four digits may be a last group with more glued on.
_GROUP = 4
_LEADING = (_GROUP, 6)


def could_hold_a_card_number(text: str) -> bool:
    """Whether ``text``, its NFKC form, or it with its number characters read as separators
    holds, in one stretch, digits that could be a card number (the module docstring)."""
    if _holds_one(text):
        return True
    # A form the same as the text (as most are: ASCII text has no other) is not searched
    # again, so that the searches cost as much as before for most text.
    forms = dict.fromkeys(
        (
            unicodedata.normalize("NFKC", text),
            _number_characters_apart(text, kept=str.isdecimal),
            # Digits written otherwise (superscript, circled) kept, and read as their
            # digits, while the lookalike numerals stand apart: its review showed
            # "4393〡6184〡3620〡467⁷" passing every other form, the superscript blanked in
            # the last, the numeral read as a digit in the rest.
            unicodedata.normalize("NFKC", _number_characters_apart(text, kept=str.isdigit)),
        )
    )
    return any(_holds_one(form) for form in forms if form != text)


def _number_characters_apart(text: str, kept: Callable[[str], bool]) -> str:
    """``text`` with each number character read as a digit but not ``kept`` (a Roman or
    Hangzhou numeral, the ideographic zero; with ``str.isdecimal``, a circled or
    superscript digit too) a space: one looks like a bar or a letter typed between a card
    number's groups, and read as a digit it hides them."""
    return "".join(" " if not kept(char) and _digit(char) is not None else char for char in text)


def _holds_one(text: str) -> bool:
    """Whether a stretch of ``text`` holds a candidate passing the Luhn check."""
    return any(
        MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS and luhn_valid(digits)
        for groups in _stretches(text)
        for digits in _candidates(groups)
    )


def _candidates(groups: list[str]) -> Iterator[str]:
    """The digits of each run of whole ``groups``, each window of a card number's length
    within a group at least as long as a card number's shortest, and each run laid out as
    a card number's first groups with the first digits of a longer group after it
    (``_glued_to_last``)."""
    for first, group in enumerate(groups):
        digits = ""
        for following in groups[first:]:
            digits += following
            if len(digits) > MAX_PAN_DIGITS:
                break
            yield digits
        for size in range(MIN_PAN_DIGITS, min(MAX_PAN_DIGITS, len(group)) + 1):
            for start in range(len(group) - size + 1):
                yield group[start : start + size]
        yield from _glued_to_last(groups, first)


def _glued_to_last(groups: list[str], first: int) -> Iterator[str]:
    """From ``groups[first]``, a card number typed in its groups with a security code or
    an expiry glued to its last: each run of groups laid out as a card number's first
    groups are (``_LEADING``), followed by a group longer than ``_GROUP`` digits, with
    the first digits of that group, ``MIN_PAN_DIGITS`` to ``MAX_PAN_DIGITS`` in all."""
    sizes: list[int] = []
    run = ""
    for group in groups[first:]:
        laid_out = len(sizes) >= 3 or tuple(sizes) == _LEADING
        if laid_out and len(group) > _GROUP:
            for cut in range(max(1, MIN_PAN_DIGITS - len(run)), len(group)):
                if len(run) + cut > MAX_PAN_DIGITS:
                    break
                yield run + group[:cut]
        sizes.append(len(group))
        run += group
        if len(run) >= MAX_PAN_DIGITS or not _leads(sizes):
            return


def _leads(sizes: list[int]) -> bool:
    """Whether groups of ``sizes`` could be a card number's first groups (``_LEADING``)."""
    return all(size == _GROUP for size in sizes) or tuple(sizes) == _LEADING


def _stretches(text: str) -> Iterator[list[str]]:
    """Each stretch of ``text`` between characters that end one (``_ends_a_stretch``)
    holding ``MIN_PAN_DIGITS`` digits or more: its groups of consecutive digits, as ASCII
    digits (``_digit``)."""
    groups: list[str] = []
    group = ""
    for index, char in enumerate(text):
        digit = _digit(char)
        if digit is not None:
            group += digit
            continue
        if group:
            groups.append(group)
            group = ""
        if _ends_a_stretch(text, index):
            if sum(map(len, groups)) >= MIN_PAN_DIGITS:
                yield groups
            groups = []
    if group:
        groups.append(group)
    if sum(map(len, groups)) >= MIN_PAN_DIGITS:
        yield groups


def _digit(char: str) -> str | None:
    """The ASCII digit ``char`` stands for: a digit of any script (``str.isdigit``), or a
    number character whose value is one digit; None for any other character."""
    if char.isdigit():
        return str(unicodedata.digit(char, 0))
    if unicodedata.category(char) in _NUMBER_CATEGORIES:
        value = unicodedata.numeric(char, -1.0)
        if value.is_integer() and 0 <= value <= 9:
            return str(int(value))
    return None


def _ends_a_stretch(text: str, index: int) -> bool:
    """Whether the character at ``index`` cannot sit inside a card number as it is
    written: a letter of a word (``_shows_as_letter``, with another beside it) or an
    ASCII letter, or a mark that ends a number (``_ENDS_A_NUMBER``, in any width). A lone
    letter from beyond ASCII does not: typed between a card number's groups, one that
    looks like a dash or a bar would hide it (the module docstring)."""
    char = text[index]
    if char.isalpha():
        return _shows_as_letter(char) and (
            char.isascii() or _letter_beside(text, index, -1) or _letter_beside(text, index, 1)
        )
    return unicodedata.normalize("NFKC", char) in _ENDS_A_NUMBER


def _shows_as_letter(char: str) -> bool:
    """Whether ``char`` is a letter that shows: not a blank filler nor a modifier letter,
    which may be typed between digits unseen."""
    return char.isalpha() and char not in _BLANK_LETTERS and unicodedata.category(char) != "Lm"


def _letter_beside(text: str, index: int, step: int) -> bool:
    """Whether the next character shown from ``index`` the way ``step`` goes (marks and
    format characters passed over) is a letter that shows."""
    index += step
    while 0 <= index < len(text) and unicodedata.category(text[index]) in _SHOW_NOTHING_BESIDE:
        index += step
    return 0 <= index < len(text) and _shows_as_letter(text[index])


__all__ = ["could_hold_a_card_number"]
