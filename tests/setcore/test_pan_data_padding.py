"""PANData is padded to one size, so the PI's extra part, whose ciphertext the merchant
sees, does not tell the length of the card number (``dualsig.build_pan_data``); the
gateway refuses any other padding (``dualsig.check_pan_data_padding``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from setcore import purchase
from setcore.dualsig import PAN_DATA_PADDED_DIGITS, DualSignedPurchase
from setcore.errors import ErrorCode
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, random_pan
from setcore.purchase import open_purchase_request
from setpay.v1 import purchase_pb2

from .certified import Certified, refused
from .test_purchase import Shop, _cardholder, _preq, _shop
from .test_purchase_gateway import _auth

DECODING_FAILURE = ErrorCode.ERROR_CODE_DECODING_FAILURE
# The shortest, the most common and the longest card numbers (ISO/IEC 7812).
LENGTHS = (MIN_PAN_DIGITS, 16, MAX_PAN_DIGITS)


def _shop_with_card_of(c: Certified, digits: int) -> Shop:
    """A purchase in flight paid with a certified card whose PAN has ``digits`` digits."""
    cardholder, card = _cardholder(c, random_pan("411111", digits).reveal())
    return dataclasses.replace(_shop(c), cardholder=cardholder, card=card)


def _extra_part_seen_by_the_merchant(preq: bytes) -> bytes:
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    return view.pi.ex_pi.extra_ciphertext


def test_the_pis_extra_part_is_one_size_whatever_the_pans_length(ec: Certified) -> None:
    sizes = {}
    for digits in LENGTHS:
        shop = _shop_with_card_of(ec, digits)
        preq = _preq(shop)
        sizes[digits] = len(_extra_part_seen_by_the_merchant(preq))
        # The gateway takes each: the padding it checks is the one the wallet gives.
        _, pi = _auth(shop, preq)
        assert pi.pan == shop.card.pan
    assert len(set(sizes.values())) == 1, sizes


@pytest.mark.parametrize(
    "padding",
    [
        b"",  # none: the size tells the PAN's length again
        bytes(PAN_DATA_PADDED_DIGITS - 16 - 1),  # one byte short
        bytes(PAN_DATA_PADDED_DIGITS - 16 + 1),  # one byte over
        b"\x00" * (PAN_DATA_PADDED_DIGITS - 16 - 1) + b"\x01",  # the right size, not zero
    ],
)
def test_a_pan_data_padded_otherwise_is_refused(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, padding: bytes
) -> None:
    real = purchase.build_dual_signed

    def padded_otherwise(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet dual-signs PANData with this padding; all else is honest.
        *before, pan_data, gateway = args
        pan = purchase_pb2.PANData.FromString(pan_data)
        pan.padding = padding
        return real(*before, pan.SerializeToString(), gateway, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", padded_otherwise)
    shop = _shop_with_card_of(ec, 16)
    reason = refused(DECODING_FAILURE, _auth, shop, _preq(shop))
    assert "padding" in reason
