"""The terms of an order typed on the command line (``setpay merchant orders new``,
``setpay wallet purchase``), read before any file or database is opened.

``bytes.fromhex`` takes spaces between the digits (``--lid-m "00 11"`` was the order
0011), and its refusal names neither the option nor the value ("non-hexadecimal number
found in fromhex() arg"); an empty ``--lid-m`` was read as none given, and made an order
under a random id, one a second run could not find again. A description whose bytes are
not UTF-8 (a shell in another locale) reaches the program as surrogates, which no order
can carry, and was refused only as the codec's own error. Each is an argparse ``type``
here: a refusal is a usage error (exit 2) that names the option and what it takes. The
wallet's ``--lid-m`` names the same id, the merchant's order to pay: there an empty one
was sent as an empty LID-M, a spaced one as the id without its spaces, and one not in hex
refused only once the command ran (exit 1). A description holding a card number was
taken too, and the merchant printed it in the initiation and kept it in its order book (the
wallet sends it in the purchase's hashed order): it is refused as a settling's reason is.
So was a card number typed as the LID-M (an even number of digits is hex): printed in the
initiation, kept and listed by the merchant, sent by the wallet in its PInitReq.
"""

from __future__ import annotations

import argparse
import re

from cli.number_options import shown
from setcore.freshness import MAX_LID_BYTES, new_id
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, luhn_valid
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES

# An order's local id as the merchant prints it (``lid_m`` of its initiation): pairs of
# hex digits, nothing between them.
_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})+")


def lid_m_hex(text: str) -> bytes:
    """An argparse ``type``: a LID-M typed in hex (``lid_m_from_hex``) that is not a card
    number: one typed into ``--lid-m`` by mistake, 14, 16 or 18 digits, is hex, and the
    merchant printed it in the initiation, kept it in its order book and listed it, and
    the wallet sent it in its PInitReq. Refused, the value not repeated, as digits only,
    as many as a card number has, that pass the Luhn check: an id of such digits that is
    no card number passes too, 1 time in 10, and is chosen again.

    Only what an operator types: the merchant's own id, drawn at random when ``--lid-m``
    is not given, never passes here, nor does the ``lid_m`` of a merchant's initiation
    file (``cli.initiation``). Such an id is all digits and passes the check 1 time in
    about 18,000 (8 random bytes): a wallet cannot type it, and pays it from the file."""
    lid_m = lid_m_from_hex(text)
    if MIN_PAN_DIGITS <= len(text) <= MAX_PAN_DIGITS and text.isdigit() and luhn_valid(text):
        raise argparse.ArgumentTypeError(
            f"an order's local id must not be a card number, and these {len(text)} digits"
            " could be one (not repeated): give another id; an order a merchant numbered so"
            " is paid from its initiation file (wallet purchase --initiation)"
        )
    return lid_m


def new_lid_m(size: int) -> bytes:
    """A new order's random LID-M of ``size`` bytes, never one whose hex is all digits:
    printed in the initiation and listed by the merchant, such an id (1 draw in about
    1,800 for 8 bytes) reads as a card number to a log scanner, and one that passes the
    Luhn check could not be typed back as ``--lid-m`` (``lid_m_hex``)."""
    while True:
        lid_m = new_id()[:size]
        if not lid_m.hex().isdigit():
            return lid_m


def lid_m_from_hex(text: str) -> bytes:
    """A LID-M in hex, of at most ``MAX_LID_BYTES`` bytes, as SET carries it
    (``setcore.freshness.check_lid``); ``argparse.ArgumentTypeError`` for one that is not."""
    if not text:
        raise argparse.ArgumentTypeError("an order's local id in hex, not empty")
    if not _HEX_PAIRS.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"an order's local id is pairs of hex digits, 0-9 and a-f, not {shown(text)}"
        )
    if len(text) > 2 * MAX_LID_BYTES:
        # Refused here, not after the passphrase, the keys and a call to the merchant.
        raise argparse.ArgumentTypeError(
            f"an order's local id is at most {MAX_LID_BYTES} bytes ({2 * MAX_LID_BYTES} hex"
            f" digits), not {len(text)} digits"
        )
    return bytes.fromhex(text)


def order_description(text: str) -> str:
    """An argparse ``type``: an order description, UTF-8 text holding nothing that could be
    a card number (``_could_hold_a_card_number``); its length is checked with the offer's
    other terms."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            "an order description is UTF-8 text: the bytes given are not (the terminal's"
            " or the shell's locale?)"
        ) from None
    # One too long for an order is refused with the other terms (saying its length), and
    # not searched: the search's time grows with the text, which a command line lets be
    # long. The description the limit admits is searched in milliseconds; one made to be
    # slow (a digit of each of many families in one stretch) is refused unsearched
    # (``gateway.ledger.reason_forms.MAX_FAMILIES``).
    if len(encoded) <= MAX_ORDER_DESCRIPTION_BYTES and _could_hold_a_card_number(text):
        raise argparse.ArgumentTypeError(
            "an order description must not hold a card number (the merchant keeps it, the"
            " wallet signs it into the purchase), and this one holds digits that could be"
            " one (not repeated); if they are not, put a word or a '#' between its numbers,"
            " as in 'order #4411 of 2026-11-24'"
        )
    return text


def _could_hold_a_card_number(text: str) -> bool:
    """Whether ``text`` could hold a card number, as a settling's reason is judged
    (``gateway.ledger.reason_filter``: grouped or not, in any script, Luhn-checked, so
    that an order's number or a date is kept).

    Imported when a description is read, not with this module: the filter's module needs
    only ``setcore.pan``, but importing it loads its package, the ledger with its SQLite
    and PostgreSQL stores, which a wallet or merchant command otherwise never loads (half
    a second or more). Its place is setcore, beside ``setcore.pan``; this import moves
    there with it."""
    from gateway.ledger.reason_filter import could_hold_a_card_number  # noqa: PLC0415

    return could_hold_a_card_number(text)
