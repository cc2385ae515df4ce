"""The ``--currency`` option the subcommands share: an ISO 4217 numeric code the list
holds now with a minor unit, in ASCII digits (``cli.number_options``: "+978", or 978 in
fullwidth digits, is no code anyone typed on purpose), or a usage error (exit 2) before
anything is opened.

The check is ``setcore.currency``'s, the one the ledger and every amount are held to: a
code it gives no minor unit (unassigned, withdrawn, or no money) would be refused later
anyway, by the ledger (after the bank opened it and created the card file) or by the
wallet's own check of the order (as a failure, exit 1, rather than a mistyped option).
"""

from __future__ import annotations

import argparse

from cli.number_options import read_whole, shown
from setcore.currency import why_refused


def currency_code(text: str) -> int:
    """``--currency``'s value as an ISO 4217 numeric code; ``ArgumentTypeError`` (argparse's
    usage error) for one no account is kept in."""
    code = read_whole(text)
    refused = f"{shown(text)} is not a number in digits 0-9" if code is None else why_refused(code)
    if code is None or refused is not None:
        # Only a three-digit code is named (``why_refused``), and text only as ``shown``
        # repeats it: a mistyped option could hold a card number.
        raise argparse.ArgumentTypeError(
            f"not an ISO 4217 numeric currency code with a minor unit: {refused} "
            "(978 is EUR, 840 USD, 392 JPY)"
        )
    return code
