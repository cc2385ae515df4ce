"""SET Initiation: the order wallet and merchant agreed out of band, before PInit.

Checked here, before anything leaves: an order no purchase could complete (a description
setcore would refuse to hash, an amount the protocol cannot carry) is a ``ConfigError``,
refused before PInit opens an order at the merchant. ``purchases`` buys it.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.errors import ConfigError
from setcore.amount import check_amount
from setcore.errors import ProtocolError
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES, Order
from setpay.v1 import common_pb2


@dataclass(frozen=True)
class Initiation:
    """SET Initiation: what wallet and merchant agreed out of band before PInit.

    ``brand_id``: the brand the merchant named for the order, "" when it named none.
    """

    lid_m: bytes
    description: bytes
    currency: int
    amount: int
    exp10: int = 2
    brand_id: str = ""

    def order(self) -> Order:
        """The order as the purchase protocol takes it (a description setcore will hash);
        ``ConfigError`` for one no purchase could complete, so that it is refused before
        PInit opens an order at the merchant."""
        if len(self.description) > MAX_ORDER_DESCRIPTION_BYTES:
            raise ConfigError(
                f"an order description is at most {MAX_ORDER_DESCRIPTION_BYTES} bytes"
            )
        try:
            amount = common_pb2.CurrencyAmount(
                currency=self.currency, amount=self.amount, exp10=self.exp10
            )
        except ValueError:
            # Not chained: protobuf's message quotes the number, which could be any digits.
            raise ConfigError(
                "the amount, currency or exponent does not fit the protocol's integers"
            ) from None
        try:
            check_amount(amount)
        except ProtocolError as exc:
            raise ConfigError(exc.reason) from None
        return Order(self.description, amount)
