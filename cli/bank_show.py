"""``setpay bank``'s account lines (``show-account``, ``show-merchant``, and the line a
block, unblock or close prints), the ``--account`` the card account commands take, and
the ``--merchant-id`` the merchant account and batch commands take.

``--account`` is a card account id as ``open-account`` printed it: ``card-`` and 24
lowercase base32 characters (``gateway.ledger.identifiers``). Anything else is a usage
error (exit 2) before the ledger is opened, and the value is not repeated: the ledger's
"no card account" error names the id it was given, and a card number typed there by
mistake (the operator has the customer's card, not its account) would be printed whole.
"""

from __future__ import annotations

import argparse
import re

from gateway.ledger import CardAccount, MerchantAccount
from setcore.names import describe, refused_character
from setcore.pki.extensions import MAX_MERCHANT_ID_CHARS

# ``gateway.ledger.identifiers.new_id("card")``: 15 random bytes in lowercase base32.
_CARD_ACCOUNT_ID = re.compile(r"card-[a-z2-7]{24}")


def card_account_id(text: str) -> str:
    """``--account``'s value: a card account id, or argparse's usage error."""
    if _CARD_ACCOUNT_ID.fullmatch(text) is None:
        # The value is not repeated: a card number given by mistake would be shown.
        raise argparse.ArgumentTypeError(
            "a card account id is card- and 24 lowercase letters and digits 2-7, as "
            f"open-account printed it and wrote in the card file (given: {len(text)} "
            "characters)"
        )
    return text


def merchant_id(text: str) -> str:
    """``--merchant-id``'s value (``open-merchant``, ``show-merchant``, ``show-batch``): an
    ID the Merchant CA registers (``setcore.registration_merchant``: 1 to
    ``MAX_MERCHANT_ID_CHARS`` characters, none of them one ``setcore.names`` refuses), or
    argparse's usage error. The ledger takes any text, but no merchant could ever register
    for an account opened under another ID, and no command closes one. The commands that
    show one refuse the others too: the ledger's "has no account" error repeats the ID,
    its control characters with it (a terminal's escape sequences)."""
    if not 0 < len(text) <= MAX_MERCHANT_ID_CHARS:
        raise argparse.ArgumentTypeError(
            f"a merchant ID is 1 to {MAX_MERCHANT_ID_CHARS} characters, as the Merchant CA "
            f"registers them (given: {len(text)} characters)"
        )
    refused = refused_character(text)
    if refused is not None:
        # Named by code point, not shown: it could rewrite the line it is printed on.
        raise argparse.ArgumentTypeError(
            "a merchant ID holds no control, line or paragraph separator, or bidirectional "
            f"character, as the Merchant CA registers them (given: {describe(refused)})"
        )
    return text


def card_line(account: CardAccount) -> str:
    """A card account for the operator: the masked PAN only, and its credit."""
    return (
        f"{account.account_id} {account.masked_pan} {account.status.value} "
        f"limit {account.credit_limit} available {account.available}"
    )


def merchant_line(merchant: MerchantAccount) -> str:
    """A merchant account for the operator: its id, currency and balances."""
    return (
        f"merchant {merchant.merchant_id} account {merchant.account_id} "
        f"({merchant.currency}) balance {merchant.balance} pending {merchant.pending}"
    )
