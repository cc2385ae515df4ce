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
standing for one (the ideographic zero, Hangzhou or Roman numerals). Four forms of the
text are searched. The text. Its NFKC form: a circled or parenthesized number is a
number there (``U+246A`` is ``11``). The text with each number character that is no
decimal digit read as a separator (``_others_apart``): a Hangzhou one looks like a bar, a
Roman one like an ``I``, the ideographic zero like an ``o``, a Kharoshthi, Rumi or Brahmi
one like a bar or a dash; typed between a card number's groups, one read as a digit adds
one to them, and no candidate is the card number: once, seven card numbers in ten so
separated were kept. That form blanks a superscript or a circled digit too, so the
fourth keeps those (digits written otherwise, ``_written_digit``), read as their digits,
and spells what NFKC spells with digits alone (``U+246A``): its review showed
``4393〡6184〡3620〡467⁷`` passing every other form. Not a digit of a script's own that is
no decimal one: kept as a digit there (a Kharoshthi one between the groups), about half
the card numbers so typed were kept. Nor the whole text's NFKC form: it makes a lone
lookalike letter an ASCII one (a full-width or a script ``l``), which ends the stretch,
and one between two groups kept four card numbers in five. These two forms do not see
such a separator between digits themselves written as number characters (the
ideographic zero for each ``0``). And, if the text holds the decimal digits of more than
one script, the last two with those of every script but one read as separators too, for
each script in turn: an Arabic-Indic or an NKo one looks like a bar or a dot, a
full-width or a mathematical one like an ASCII one, and typed between a card number's
groups, read as a digit, it hid them as a numeral did (about three card numbers in four
with one between two groups were kept); a card number in Arabic-Indic digits with an
ASCII one between its groups the same. Text with the digits of one script only (ASCII)
has no such form, and is decided as before.

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
rewords it (``from 2026-11-20 to 2026-11-24``, ``ticket #4411``). The same text with its
numbers in two scripts is refused a little more often (three dates, about two times in
three rather than three in five), a number of one script standing apart between those of
the other; a digit of the card number's own script typed between its groups is one more
digit, and the filter cannot tell it from one. A card number with a digit written as a
numeral that is no decimal digit (Kharoshthi, Ethiopic) is read by the first two forms
only. An invisible character inside a number has ordinary text refused a little more
often (a list of four tickets with one inside a number, 31 times in 100 rather than 29).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from itertools import accumulate

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
_ASCII_DIGITS = frozenset("0123456789")
# How a card number's groups are laid out before its last, as it is printed and typed:
# four digits each (16 and 19 digits, the first three or four of 4-4-4-4 and 4-4-4-4-3),
# or four then six (American Express's 4-6-5, Diners Club's 4-6-4). A group that follows
# such a run and is longer than four digits may be a last group with more glued on.
_GROUP = 4
_LEADING = (_GROUP, 6)
# How many characters' readings are kept (each form of a text reads every character once
# more): enough for the characters of the longest reason, bounded whatever is typed.
_CACHED_CHARACTERS = 4096


def could_hold_a_card_number(text: str) -> bool:
    """Whether ``text``, its NFKC form, or it with its number characters (those of every
    script but one too) read as separators, the digits written otherwise blanked or read
    as digits, holds, in one stretch, digits that could be a card number (the module
    docstring)."""
    if _holds_one(text):
        return True
    # A form the same as the text (as most are: ASCII text has no other) is not searched
    # again, so that the searches cost as much as before for most text.
    forms = dict.fromkeys((unicodedata.normalize("NFKC", text), *_others_apart(text)))
    return any(_holds_one(form) for form in forms if form != text)


def _others_apart(text: str) -> Iterator[str]:
    """``text`` with the number characters that are no decimal digit read as separators
    (``_apart``), then with those but the digits written otherwise (``_written_digit``),
    and what NFKC spells with digits so spelled (``_spelled``); and, if it
    holds the decimal digits of more than one script, both with those of every script
    but one read as separators too, for each script in turn. A digit of another script
    looks like a bar or a dot (``U+0661``, ``U+07C1``, the full-width one) typed between
    a card number's groups, and read as a digit it hides them, as a lookalike numeral
    does: once, about three card numbers in four with one between two groups were kept."""
    counts = Counter(text)
    numbers = {char for char in counts if _digit(char) is not None}
    scripts = {char: _script(char) for char in numbers if char.isdecimal()}
    # Digits written otherwise (superscript, circled), kept in the second form and read
    # as their digits: its review showed "4393〡6184〡3620〡467⁷" passing every other
    # form, the superscript blanked in the first, the numeral read as a digit in the rest.
    # Not a digit of a script's own that is no decimal one (Kharoshthi, Rumi, Brahmi),
    # which looks like a bar or a dash as a Hangzhou one does: kept, it hid them again.
    written_otherwise = {char for char in numbers if _written_digit(char)}
    numerals = numbers - written_otherwise - scripts.keys()
    # What NFKC spells with digits (``U+246A`` is ``11``), so spelled in the second form:
    # not the whole text's NFKC, which makes a lone lookalike letter (a full-width or a
    # script ``l``) an ASCII one, ending the stretch: one between two groups hid them.
    spelled = {ord(char): _spelled(char) for char in counts if _spelled(char)}
    # Each script's digits by its zero, and None for every script's.
    held: Counter[int | None] = Counter({None: 0})
    for char, zero in scripts.items():
        held[zero] += counts[char]
        held[None] += counts[char]
    # A script's forms are searched only if they can hold a card number's shortest: its
    # digits, and any other the second form keeps or spells (``U+246A`` is ``11``).
    besides = sum(
        count * _digits_within(char)
        for char, count in counts.items()
        if char not in scripts and char not in numerals
    )
    for kept_script in list(held) if len(held) > 2 else [None]:
        if held[kept_script] + besides < MIN_PAN_DIGITS:
            continue
        kept = {char for char, zero in scripts.items() if kept_script in (None, zero)}
        yield _apart(text, numbers - kept)
        yield _apart(text, numbers - kept - written_otherwise, spelled)


def _apart(text: str, chars: set[str], spelled: dict[int, str] | None = None) -> str:
    """``text`` with each of ``chars`` (number characters) a space, and each character
    ``spelled`` maps spelled so."""
    return text.translate({**(spelled or {}), **{ord(char): " " for char in chars}})


@lru_cache(maxsize=_CACHED_CHARACTERS)
def _written_digit(char: str) -> bool:
    """Whether ``char`` is a digit written otherwise, superscript, subscript, circled or
    parenthesized: no decimal digit, but one NFKC makes an ASCII digit or one circled
    (the dingbats, which NFKC leaves as they are)."""
    if not char.isdigit() or char.isdecimal():
        return False
    form = unicodedata.normalize("NFKC", char)
    return not _ASCII_DIGITS.isdisjoint(form) or "CIRCLED" in unicodedata.name(char, "")


@lru_cache(maxsize=_CACHED_CHARACTERS)
def _spelled(char: str) -> str:
    """``char``'s NFKC form if it is no digit (``_digit``) but NFKC spells it with ASCII
    digits and no letter (``U+246A``, ``U+2474``, a fraction); else nothing."""
    form = unicodedata.normalize("NFKC", char)
    if _digit(char) is not None or _ASCII_DIGITS.isdisjoint(form):
        return ""
    return "" if any(each.isalpha() for each in form) else form


def _script(char: str) -> int:
    """The code point of the zero of the script whose decimal digit ``char`` is (each
    script's are ten in a row, zero first), to tell one script's digits from another's."""
    return ord(char) - unicodedata.digit(char)


@lru_cache(maxsize=_CACHED_CHARACTERS)
def _digits_within(char: str) -> int:
    """How many digits ``char`` is read as, itself or in its NFKC form."""
    return max(
        _digit(char) is not None,
        sum(_digit(each) is not None for each in unicodedata.normalize("NFKC", char)),
    )


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
    digits (``_digit``); and, if a character that shows nothing (``_SHOW_NOTHING_BESIDE``,
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
        if run and unicodedata.category(char) in _SHOW_NOTHING_BESIDE:
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


@lru_cache(maxsize=_CACHED_CHARACTERS)
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
    return _ends_a_number(char)


@lru_cache(maxsize=_CACHED_CHARACTERS)
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
    while 0 <= index < len(text) and unicodedata.category(text[index]) in _SHOW_NOTHING_BESIDE:
        index += step
    return 0 <= index < len(text) and _shows_as_letter(text[index])


__all__ = ["could_hold_a_card_number"]
