"""Numbers typed on the command line: read one way, each option with its range.

``int`` and ``float`` take more than anyone types on purpose: a sign (``+5``), spaces
around the digits (`` 5``), underscores (``5_000``) and the digits of every other script
(fullwidth, Arabic-Indic), all silently as numbers; ``float`` also ``nan``,
``inf`` and ``1e3``. An option read so could act on a number nobody saw on the screen: a
capture of another amount, a page of another batch, a key version deleted that nobody
typed. So a whole number is ASCII digits, read as the bank reads its settings
(``gateway.ports.parse_integer``, the same pattern; a test holds the two alike), and a
decimal one is ASCII digits with at most one decimal point. A minus sign is read only to
be refused with the range. The module imports nothing of setpay's: the merchant, wallet
and keys commands read numbers too, and none of them loads the bank's package (or the
protocol's, for keys) to do so.

Each parser here is an argparse ``type``: a value it refuses is argparse's usage error
(exit 2, "argument --OPTION: ...", before anything is opened or sent), saying the range
and the text given, unless that text could be a card number (``shown``).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

# A whole number as an operator writes one; a minus sign is matched so that the refusal
# can name the range instead.
_WHOLE = re.compile(r"-?[0-9]+")
# Characters no bound here needs: int() refuses a longer run of digits (Python's 4300-digit
# limit), and float() reads one past 308 digits as infinity.
MAX_NUMBER_CHARS = 100
# As many digits as the shortest card number (``setcore.pan.MIN_PAN_DIGITS``, not imported
# for the reason above; a test holds them equal): a value holding this many may be a card
# number typed into the wrong option, and is not repeated.
CARD_DIGITS = 13
# A decimal number as an operator writes one: "5", "0.8", ".5"; no plus sign, exponent
# or spaces, and a minus sign matched for the reason the whole number's is.
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# The largest amount of one order or operation, in minor units: the ledger's
# (``gateway.ledger.limits.MAX_AMOUNT``, not imported for the reason above; a test holds
# them equal), ten billion in major units, beyond any card; the gateway declines an
# authorization above it. Every card number is larger: it has CARD_DIGITS digits or more,
# the first of them not 0 (no issuer's number starts so), and 10**12 itself fails the Luhn
# check. So an amount read with ``amount`` is never a card number typed into the option.
MAX_AMOUNT = 10**12
# A bound with this many digits or more is written as a power ("10**12", "2**63 - 1"):
# written out, it is a run of digits that reads like a card number to a log scanner.
_LONG_BOUND_DIGITS = CARD_DIGITS
_INT64_MAX = 2**63 - 1  # the stores' and the wire's integers: messages name it so
# A refused value longer than this is not repeated: no option's value is this long, and
# a pasted paragraph would bury the message.
MAX_SHOWN_CHARS = 40


def shown(text: str) -> str:
    """``text`` quoted for an error message, or its length when it holds as many digits as
    a card number (in any script; a PAN typed into the wrong option is not echoed, whole
    or spaced) or is too long to be worth repeating."""
    digits = sum(1 for char in text if char.isdigit())
    if digits >= CARD_DIGITS or len(text) > MAX_SHOWN_CHARS:
        return f"the {len(text)} characters given (not repeated)"
    return repr(text)


def bound_text(number: int) -> str:
    """A range's bound as a message writes it (``_LONG_BOUND_DIGITS``)."""
    if len(str(abs(number))) < _LONG_BOUND_DIGITS:
        return str(number)
    if number == _INT64_MAX:
        return "2**63 - 1"
    power = round(math.log10(number)) if number > 0 else 0
    return f"10**{power}" if number == 10**power else f"{number:,}"


def read_whole(text: str) -> int | None:
    """The whole number ``text`` writes in ASCII digits (a minus sign allowed), or None."""
    if len(text) > MAX_NUMBER_CHARS or not _WHOLE.fullmatch(text):
        return None
    return int(text)


def integer(text: str) -> int:
    """An argparse ``type``: a whole number in ASCII digits, a minus sign allowed, for an
    option whose range another check names with more to say (an exponent: the currency's
    minor unit), after the command line is read. Not for an amount an order or operation
    carries or keeps (``amount``, ``whole(0, MAX_AMOUNT)``)."""
    number = read_whole(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"must be a whole number in digits 0-9, not {shown(text)}")
    return number


def whole(least: int, most: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``least`` to ``most`` in ASCII digits;
    ``why`` (a parenthesis: "(the gateway's page)") says where the range comes from."""
    said = f" {why}" if why else ""

    def parse(text: str) -> int:
        number = read_whole(text)
        if number is None or not least <= number <= most:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {bound_text(least)} to {bound_text(most)}"
                f"{said} in digits 0-9, not {shown(text)}"
            )
        return number

    return parse


def amount(text: str) -> int:
    """An argparse ``type``: an amount in minor units, 1 to ``MAX_AMOUNT``. Read as any
    whole number, a card number typed into ``--amount`` became the order's amount: printed
    in its initiation, stored in the merchant's order book and sent in the purchase; or,
    for a capture or a refund, repeated in the merchant's refusal. Refused here, before
    anything is opened, signed or sent, the value not repeated (``shown``). The other
    checks of an amount (what is left to capture, the order's) are made after."""
    return _AMOUNT(text)


_AMOUNT = whole(1, MAX_AMOUNT, "(minor units; the bank's largest amount)")


def read_decimal(text: str) -> float | None:
    """The number ``text`` writes in ASCII digits with at most one decimal point (a minus
    sign allowed), or None: never nan or an infinity, which the pattern cannot match."""
    if len(text) > MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(text):
        return None
    return float(text)


def decimal(least: float, most: float, *, unit: str) -> Callable[[str], float]:
    """An argparse ``type``: a number from ``least`` to ``most`` (``read_decimal``), in
    ``unit`` ("ms", "s")."""

    def parse(text: str) -> float:
        number = read_decimal(text)
        if number is None or not least <= number <= most:
            raise argparse.ArgumentTypeError(
                f"must be a number from {least:g} to {most:g} {unit} in digits 0-9 with an "
                f"optional decimal point, not {shown(text)}"
            )
        return number

    return parse
