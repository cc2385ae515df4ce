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
refused only once the command ran (exit 1).
"""

from __future__ import annotations

import argparse
import re

from cli.number_options import shown
from setcore.freshness import MAX_LID_BYTES

# An order's local id as the merchant prints it (``lid_m`` of its initiation): pairs of
# hex digits, nothing between them.
_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})+")


def lid_m_hex(text: str) -> bytes:
    """An argparse ``type``: a LID-M in hex, of at most ``MAX_LID_BYTES`` bytes, as SET
    carries it (``setcore.freshness.check_lid``)."""
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
    """An argparse ``type``: an order description, UTF-8 text (its length is checked with
    the offer's other terms)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            "an order description is UTF-8 text: the bytes given are not (the terminal's"
            " or the shell's locale?)"
        ) from None
    return text
