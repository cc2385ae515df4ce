"""The terms of a new offer (SET Initiation), checked before the merchant records it
(``MerchantStore.add_offer``, whoever makes the offer).

An offer no purchase can complete is refused when it is made, not when a wallet tries to
pay it. The limits are the protocol's own, taken from setcore rather than copied: the
LID-M a PInitReq may carry (``setcore.freshness.check_lid``), the order description the
purchase code will hash (``setcore.purchase.MAX_ORDER_DESCRIPTION_BYTES``), the wire's
integer sizes (``CurrencyAmount``: an int64 amount, an int32 exponent) and a positive
amount in an ISO 4217 currency, at that currency's minor unit
(``setcore.amount.check_amount``).
"""

from __future__ import annotations

from clients.errors import ConfigError
from clients.merchant.records import Money
from setcore.amount import check_amount
from setcore.errors import ProtocolError
from setcore.freshness import check_lid
from setcore.pan import MIN_PAN_DIGITS
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES


def check_offer(lid_m: bytes, description: bytes, amount: Money) -> None:
    """Refuse (``ConfigError``, naming the term) an offer no wallet could pay.

    An amount or exponent of as many digits as a card number is measured, not repeated:
    a PAN typed into ``--amount`` must not reach the terminal or a log."""
    terms = [
        str(number)
        if len(str(abs(number))) < MIN_PAN_DIGITS
        else f"of {len(str(number))} characters"
        for number in (amount.minor, amount.exp10)
    ]
    said = f"amount {terms[0]} in currency {amount.currency} (exponent {terms[1]})"
    try:
        check_lid(lid_m, "the LID-M")
    except ProtocolError as exc:
        raise ConfigError(exc.reason) from None
    if len(description) > MAX_ORDER_DESCRIPTION_BYTES:
        raise ConfigError(
            f"the description is {len(description)} bytes; an order's is at most "
            f"{MAX_ORDER_DESCRIPTION_BYTES}"
        )
    try:
        wire = amount.to_proto()
    except ValueError:
        raise ConfigError(f"{said} does not fit the protocol's integers") from None
    try:
        check_amount(wire)
    except ProtocolError as exc:
        raise ConfigError(f"{said}: {exc.reason}") from None
