"""The ``--currency`` option the subcommands share: an ISO 4217 numeric code with a minor
unit, or a usage error (exit 2) before anything is opened. ``setcore.currency`` gives
every code from 1 to 999 it does not list two decimals, assigned or not, so an
unassigned code passes here as it does in the ledger.

The check is ``setcore.currency``'s, the one the ledger and every amount are held to: a
code it gives no minor unit would be refused later anyway, by the ledger (after the bank
opened it and created the card file) or by the wallet's own check of the order (as a
failure, exit 1, rather than a mistyped option).
"""

from __future__ import annotations

import argparse

from setcore.currency import MAX_CURRENCY, MIN_CURRENCY, minor_unit


def currency_code(text: str) -> int:
    """``--currency``'s value as an ISO 4217 numeric code; ``ArgumentTypeError`` (argparse's
    usage error) for one no account is kept in."""
    try:
        code = int(text)
    except ValueError:
        code = 0  # not a number: refused below with the same words, as code 0 is
    if minor_unit(code) is None:
        # The value is not repeated: a mistyped option could hold a card number.
        raise argparse.ArgumentTypeError(
            f"not an ISO 4217 numeric currency code with a minor unit: {MIN_CURRENCY} to "
            f"{MAX_CURRENCY} (978 EUR, 840 USD, 392 JPY), not a code no card pays in "
            "(959 gold, 960 SDR, 963 testing, 999 no currency)"
        )
    return code
