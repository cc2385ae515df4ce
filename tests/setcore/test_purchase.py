"""Purchase messages on a real brand: the parties of a purchase in flight that the wallet,
merchant and gateway checks (``test_purchase_*``, ``test_authorization``) build on, and
the round trip they depart from."""

from __future__ import annotations

from dataclasses import dataclass

from hsm.base import KeyUsage
from setcore.credentials import Credentials
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN, blinded_account
from setcore.pki.issuance import card_expiry_end, issue_cardholder
from setcore.purchase import (
    CardData,
    MerchantOffer,
    MerchantOrder,
    Order,
    PInitState,
    build_pinit_request,
    build_pinit_response,
    build_purchase_request,
    open_pinit_response,
    open_purchase_request,
    verify_purchase,
)
from setpay.v1 import common_pb2, purchase_pb2
from tests.cards import MASTERCARD, VISA

from .certified import Certified, eur

# Another Luhn-valid test card: an impostor's, or one the certificate does not blind.
OTHER_CARD = MASTERCARD
EXPIRY = "203012"


@dataclass
class Shop:
    """A brand, a cardholder with a real certificate, and one purchase in flight."""

    c: Certified
    card: CardData
    cardholder: Credentials
    state: PInitState
    offer: MerchantOffer
    order: MerchantOrder


def _cardholder(c: Certified, pan: str = VISA) -> tuple[Credentials, CardData]:
    world = c.world
    key = world.key(KeyUsage.SIGNATURE)
    card = CardData(PAN(pan), EXPIRY, new_id(), new_id())
    cca = world.brand.cardholder_ca.ca
    der = issue_cardholder(
        cca, key.public_key, blinded_account(card.pan_secret, card.pan, EXPIRY),
        card_expiry_end(EXPIRY),
    )  # fmt: skip
    return Credentials(world.backend, key, der, (cca.der,)), card


def _shop(c: Certified, *, gateway_kex: bytes | None = None) -> Shop:
    cardholder, card = _cardholder(c)
    request, state = build_pinit_request(card.pan, c.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(
        lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id(), preq_date_unix_ms=now_ms(), language="en"
    )
    chall_m = new_id()
    response = build_pinit_response(
        c.merchant, request, trans, chall_m, gateway_kex or c.gateway.key_exchange_cert or b"",
        (c.world.brand.gateway_ca.ca.der,),
    )  # fmt: skip
    offer = open_pinit_response(response, state, c.trust())
    order = MerchantOrder(trans, chall_m, b"1 book", eur(1999), c.brand_id)
    return Shop(c, card, cardholder, state, offer, order)


def _preq(shop: Shop, order: Order | None = None) -> bytes:
    request, _ = build_purchase_request(
        shop.cardholder, shop.offer, order or Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    return request.SerializeToString()


def _forge(header: common_pb2.Header, field: str) -> None:
    setattr(header, field, new_id() if field in ("rrpid", "xid") else b"forged")


def _verify(shop: Shop, preq: bytes, order: MerchantOrder | None = None) -> object:
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    return verify_purchase(view, order or shop.order, shop.c.trust())


def test_purchase_round_trip(certified: Certified) -> None:
    shop = _shop(certified)
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(_preq(shop)))
    cardholder = verify_purchase(view, shop.order, certified.trust())
    assert cardholder.thumbprint == shop.cardholder.signature_thumb
