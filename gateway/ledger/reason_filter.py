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

A character that shows nothing (a zero-width space or joiner, a soft hyphen, a combining
mark) after a digit is read both ways: as splitting its group, and as not, the group as
it is seen (``_stretches``). Split only, a group of four with one inside was two, no
longer laid out as a card number's: about two card numbers in three with a security code
glued on and one inside a group were kept. Joined only, one between two groups would
hide them.

A digit is any a script writes (``str.isdigit``, by its value), and a number character
standing for one (the ideographic zero, Hangzhou or Roman numerals). The text is
searched, and its NFKC form: a circled or parenthesized number is a number there
(``U+246A`` is ``11``). Not only: a digit of another family than the card number's digits
(a decimal script's, the superscripts, the subscripts, the circled digits, a script's
numerals: ``gateway.ledger.reason_forms``) typed between its groups looks like a bar, a
dash or a dot (a Hangzhou or a Kharoshthi numeral, an Arabic-Indic or an NKo digit, a
superscript one), and read as a digit it adds one to them, so that no candidate is the
card number (once, seven card numbers in ten with a numeral between their groups were
kept, and three in four with another script's digit). So a stretch holding the digits of
more than one family is searched in more forms (``other_forms``): with the digits of
every family but one read as separators, for each family in turn (and for the decimal
scripts together, and for ASCII and full-width together, as an input method's toggle
mixes them, and Arabic-Indic and Extended Arabic-Indic); the same with the digits written
otherwise (superscript, circled) kept, and what NFKC spells with digits so spelled
(``4393〡6184〡3620〡467⁷``); and with each digit that is no decimal one read as a separator
between two digits and as its digit at a number's edge (``6083¹778353¹374⁰``). Once, only
the decimal scripts were families, and the text was searched whole in each form: a card
number in superscript or circled digits with an ASCII one between its groups was kept (51
in 300), and a reason of 4096 bytes with a digit of each of the 66 scripts in stretches
of their own took over 100 ms. A stretch with the digits of one script only (ASCII) has
no other form, and is decided as before, nor is the rest of the text searched again for
the one that has.

What that leaves, as a trade-off. A colon or an equals sign between a card number's
groups ends the stretch, as it must for a time (``14:30:05``) or a pair (``a=b``) to be
kept; so does a word between them, two lookalike letters (a "dash" of two) or an ASCII
letter included. A digit glued to a grouped card number's first group is not looked
through, nor digits glued to the last group of one grouped otherwise than as cards are
printed (``_LEADING``). Digits written as Chinese numerals are not read, and a card
number so written is kept: one to nine (``U+4E00`` to ``U+4E5D``) are letters, not number
characters (only the zero, ``U+3007``, is one), and a run of them is a word that ends the
stretch; read as digits, they would have ordinary Chinese or Japanese text refused. And
ordinary text is refused now and then: a date range or a list of tickets with nothing but
spaces, commas, slashes or a one-letter word (not ASCII) between its numbers holds, about
one time in five, whole groups that pass the Luhn check; three numbers of four digits, or
one of four and one of six, followed by a longer one, about one time in two (a card
number with its security code glued on is typed just so); an id of 13 digits or more
typed whole, more often still (one of 14 digits about one time in four). The operator
rewords it (``from 2026-11-20 to 2026-11-24``, ``ticket #4411``). The same text with its
numbers in two scripts is refused a little more often (three dates, about two times in
three rather than three in five), a number of one script standing apart between those of
the other; a digit of the card number's own family typed between its groups is one more
digit, and the filter cannot tell it from one (a superscript between the groups of a card
number in superscripts; a negative circled digit of one style between those of another,
the dingbats being families by their names' first words). Nor does it see a card number
typed in the digits of two other families mixed (but ASCII and full-width, Arabic-Indic
and Extended Arabic-Indic) with another's between its groups (36 in 300 so typed are
kept), nor, now and then, one with superscripts between its groups, a superscript for its
last digit and a security code glued on (6 in 300). An invisible character inside a
number has ordinary text refused a little more often (a list of four tickets with one
inside a number, 31 times in 100 rather than 29).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from functools import lru_cache
from itertools import accumulate

from gateway.ledger.reason_forms import (
    CACHED_CHARACTERS,
    SHOW_NOTHING_BESIDE,
    other_forms,
    too_mixed,
)
from gateway.ledger.reason_forms import digit as _digit
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS

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
# How a card number's groups are laid out before its last, as it is printed and typed:
# four digits each (16 and 19 digits, the first three or four of 4-4-4-4 and 4-4-4-4-3),
# or four then six (American Express's 4-6-5, Diners Club's 4-6-4). A group that follows
# such a run and is longer than four digits may be a last group with more glued on.
_GROUP = 4
_LEADING = (_GROUP, 6)


def could_hold_a_card_number(text: str) -> bool:
    """Whether ``text``, its NFKC form, or a stretch of it with its digits of every family
    but one, or of one family, read as separators (``other_forms``), holds, in one
    stretch, digits that could be a card number (the module docstring)."""
    if _holds_one(text):
        return True
    # A form the same as the text (as most are: ASCII text has no other) is not searched
    # again, so that the searches cost as much as before for most text.
    normalized = unicodedata.normalize("NFKC", text)
    if normalized != text and _holds_one(normalized):
        return True
    # The other forms stretch by stretch: only a stretch with digits of more than one
    # family has any, searched once each; the rest of the text, not again. Searched
    # whole, 66 decimal scripts' digits and 13 superscripts, each in a stretch of its own,
    # had a long reason's every other stretch searched 135 times (over 100 ms for 4096
    # bytes).
    for stretch in _pieces(text):
        if too_mixed(stretch):
            return True  # refused unsearched (``reason_forms.MAX_FAMILIES``)
        forms = dict.fromkeys(other_forms(stretch))
        if any(_holds_one(form) for form in forms if form != stretch):
            return True
    return False


def _pieces(text: str) -> Iterator[str]:
    """Each stretch of ``text`` between characters that end one (``_ends_a_stretch``), as
    it is written. Reading a digit as a separator or spelling one neither ends a stretch
    nor starts one, so a stretch's forms are searched on their own as within the text's."""
    start = 0
    for index, char in enumerate(text):
        # Most characters are no letter (a digit, a space): not looked around.
        if (char.isalpha() or _ends_a_number(char)) and _ends_a_stretch(text, index):
            if index > start:
                yield text[start:index]
            start = index + 1
    if len(text) > start:
        yield text[start:]


def _holds_one(text: str) -> bool:
    """Whether a stretch of ``text`` holds a candidate passing the Luhn check."""
    for groups in _stretches(text):
        digits = "".join(groups)
        sums = _luhn_sums(digits)
        for begin, end in _candidates(groups):
            # The Luhn check of digits[begin:end]: every second digit from its last doubled.
            total = sums[(end - 1) % 2]
            if (total[end] - total[begin]) % 10 == 0:
                return True
    return False


def _luhn_sums(digits: str) -> tuple[list[int], list[int]]:
    """For a last digit at an even index, then at an odd one: the sums of ``digits``
    before each index, those of the other parity doubled as the Luhn check doubles them,
    so that a candidate is checked in two subtractions, not digit by digit (a long
    reason's 500 digits hold 3,451 windows of a card number's length)."""
    values = [ord(char) - 48 for char in digits]
    doubled = [value * 2 - 9 if value > 4 else value * 2 for value in values]
    even = [(values, doubled)[index % 2][index] for index in range(len(values))]
    odd = [(doubled, values)[index % 2][index] for index in range(len(values))]
    return list(accumulate(even, initial=0)), list(accumulate(odd, initial=0))


def _candidates(groups: list[str]) -> Iterator[tuple[int, int]]:
    """Where in the digits of ``groups`` (joined) each candidate starts and ends: each
    run of whole groups of a card number's length, each window of a card number's length
    within a group, and each run laid out as a card number's first groups with the first
    digits of a longer group after it (``_glued_to_last``)."""
    # Where each group starts in the stretch's digits: a run of whole groups of a card
    # number's length ends where another starts, found by bisection, not group by group.
    starts = list(accumulate(map(len, groups), initial=0))
    for first, group in enumerate(groups):
        begin = starts[first]
        shortest = bisect_left(starts, begin + MIN_PAN_DIGITS, first + 1)
        for end in starts[shortest : bisect_right(starts, begin + MAX_PAN_DIGITS, shortest)]:
            yield begin, end
        for size in range(MIN_PAN_DIGITS, min(MAX_PAN_DIGITS, len(group)) + 1):
            for start in range(begin, begin + len(group) - size + 1):
                yield start, start + size
        yield from _glued_to_last(groups, first, starts)


def _glued_to_last(groups: list[str], first: int, starts: list[int]) -> Iterator[tuple[int, int]]:
    """From ``groups[first]``, a card number typed in its groups with a security code or
    an expiry glued to its last: each run of groups laid out as a card number's first
    groups are (``_LEADING``), followed by a group longer than ``_GROUP`` digits, with
    the first digits of that group, ``MIN_PAN_DIGITS`` to ``MAX_PAN_DIGITS`` in all
    (where it starts and ends, ``starts`` being where each group does)."""
    sizes: list[int] = []
    begin = run = starts[first]
    for index in range(first, len(groups)):
        size = len(groups[index])
        laid_out = len(sizes) >= 3 or tuple(sizes) == _LEADING
        if laid_out and size > _GROUP:
            for cut in range(max(1, MIN_PAN_DIGITS - (run - begin)), size):
                if run - begin + cut > MAX_PAN_DIGITS:
                    break
                yield begin, run + cut
        sizes.append(size)
        run += size
        if run - begin >= MAX_PAN_DIGITS or not _leads(sizes):
            return


def _leads(sizes: list[int]) -> bool:
    """Whether groups of ``sizes`` could be a card number's first groups (``_LEADING``)."""
    return all(size == _GROUP for size in sizes) or tuple(sizes) == _LEADING


def _stretches(text: str) -> Iterator[list[str]]:
    """Each stretch of ``text`` between characters that end one (``_ends_a_stretch``)
    holding ``MIN_PAN_DIGITS`` digits or more: its groups of consecutive digits, as ASCII
    digits (``_digit``); and, if a character that shows nothing (``SHOW_NOTHING_BESIDE``,
    a zero-width space, a soft hyphen, a combining mark) stands after a digit, its groups
    as they are seen, each going on past it. Split there only, a group of four with one
    inside was two: not laid out as a card number's (``_LEADING``), it hid a security
    code glued to the last group (about two card numbers in three so typed were kept).
    Not joined only: an invisible character between two groups would hide them so."""
    groups: list[str] = []
    seen: list[str] = []
    group = run = ""
    for index, char in enumerate(text):
        digit = _digit(char)
        if digit is not None:
            group += digit
            run += digit
            continue
        if group:
            groups.append(group)
            group = ""
        if run and unicodedata.category(char) in SHOW_NOTHING_BESIDE:
            continue
        if run:
            seen.append(run)
            run = ""
        # Most characters between digits are no letter (a space): not looked around.
        if (char.isalpha() or _ends_a_number(char)) and _ends_a_stretch(text, index):
            yield from _both(groups, seen)
            groups, seen = [], []
    if group:
        groups.append(group)
    if run:
        seen.append(run)
    yield from _both(groups, seen)


def _both(groups: list[str], seen: list[str]) -> Iterator[list[str]]:
    """``groups``, and ``seen`` (the same digits) if grouped otherwise, when they hold a
    card number's shortest."""
    if sum(map(len, groups)) >= MIN_PAN_DIGITS:
        yield groups
        if len(seen) != len(groups):
            yield seen


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
    return _ends_a_number(char)


@lru_cache(maxsize=CACHED_CHARACTERS)
def _ends_a_number(char: str) -> bool:
    """Whether ``char`` is a mark that ends a number (``_ENDS_A_NUMBER``, in any width)."""
    return unicodedata.normalize("NFKC", char) in _ENDS_A_NUMBER


def _shows_as_letter(char: str) -> bool:
    """Whether ``char`` is a letter that shows: not a blank filler nor a modifier letter,
    which may be typed between digits unseen."""
    return char.isalpha() and char not in _BLANK_LETTERS and unicodedata.category(char) != "Lm"


def _letter_beside(text: str, index: int, step: int) -> bool:
    """Whether the next character shown from ``index`` the way ``step`` goes (marks and
    format characters passed over) is a letter that shows."""
    index += step
    while 0 <= index < len(text) and unicodedata.category(text[index]) in SHOW_NOTHING_BESIDE:
        index += step
    return 0 <= index < len(text) and _shows_as_letter(text[index])


__all__ = ["could_hold_a_card_number"]
