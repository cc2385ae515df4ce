"""The wallet's checks of PInitRes and PRes on a real brand (SET-PROTOCOL.md 5.2, 5.6,
3.1, 3.3): each refuses an answer to another request, order or purchase, signed by
another party or under a header naming other ids, for its own reason."""

from __future__ import annotations

import dataclasses

import pytest

from setcore import purchase
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.purchase import (
    Order,
    PurchaseState,
    build_inquiry_request,
    build_pinit_request,
    build_pinit_response,
    build_purchase_request,
    build_purchase_response,
    open_inquiry_response,
    open_pinit_response,
    open_purchase_response,
)
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified, eur, refused
from .test_purchase import Shop, _cardholder, _forge, _shop


def _offered() -> dict[str, object]:
    """The TransIDs fields a merchant fills as the wallet checks them: dated now, in the
    language ``build_pinit_request`` asks for."""
    return {"preq_date_unix_ms": now_ms(), "language": "en"}


def test_wallet_refuses_a_merchant_key_exchange_cert_as_the_gateway(ec: Certified) -> None:
    # The merchant names its own key-exchange certificate where a gateway's is required.
    with pytest.raises(ProtocolError) as exc:
        _shop(ec, gateway_kex=ec.merchant.key_exchange_cert)
    assert exc.value.code == ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE


def test_wallet_refuses_a_pinitres_for_another_request(ec: Certified) -> None:
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(lid_c=b"lid-c", xid=new_id(), **_offered())
    args = (
        trans,
        new_id(),
        ec.gateway.key_exchange_cert or b"",
        (ec.world.brand.gateway_ca.ca.der,),
    )
    response = build_pinit_response(ec.merchant, request, *args)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, open_pinit_response, response,
            dataclasses.replace(state, rrpid=new_id()), ec.trust())  # fmt: skip
    refused(ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH, open_pinit_response, response,
            dataclasses.replace(state, chall_c=new_id()), ec.trust())  # fmt: skip
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_pinit_response, response,
            dataclasses.replace(state, lid_c=b"other"), ec.trust())  # fmt: skip


def test_wallet_refuses_a_pinitres_for_another_order(ec: Certified) -> None:
    # The wallet asked about its order's LID-M; the merchant signs an offer for another
    # one (SET-PROTOCOL.md 5.2: the gateway key is the one M chose for this LID-M).
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c", lid_m=b"lid-m")
    gateway = (ec.gateway.key_exchange_cert or b"", (ec.world.brand.gateway_ca.ca.der,))
    for lid_m in (b"another-order", b""):
        trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=lid_m, xid=new_id(), **_offered())
        response = build_pinit_response(ec.merchant, request, trans, new_id(), *gateway)
        reason = refused(ErrorCode.ERROR_CODE_UNKNOWN_LID, open_pinit_response, response, state,
                         ec.trust())  # fmt: skip
        assert "LID-M" in reason
    trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id(), **_offered())
    response = build_pinit_response(ec.merchant, request, trans, new_id(), *gateway)
    assert open_pinit_response(response, state, ec.trust()).trans_ids.lid_m == b"lid-m"


# --- PRes (SET-PROTOCOL.md 5.6, 3.3) ------------------------------------------------


# What an answer about a purchase reports (SET-PROTOCOL.md 5.6): exactly one payload.
RECEIVED = (purchase_pb2.PResPayload(completion_code=purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED),)


def _pres(
    shop: Shop, merchant: Credentials | None = None, **change: bytes
) -> tuple[purchase_pb2.PurchaseResponse, PurchaseState]:
    """A PRes for the shop's purchase ("order received"), as ``merchant`` signs it, with
    ids ``change``d."""
    _, bought = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    trans = common_pb2.TransIDs()
    trans.CopyFrom(bought.trans_ids)
    trans.xid = change.get("xid", trans.xid)
    signed = build_purchase_response(
        merchant or shop.c.merchant, trans, change.get("rrpid", bought.rrpid),
        change.get("chall_c", bought.chall_c), RECEIVED,
    )  # fmt: skip
    return purchase_pb2.PurchaseResponse(p_res=signed), bought


def test_wallet_accepts_the_pres_of_its_purchase(ec: Certified) -> None:
    response, state = _pres(_shop(ec))
    opened = open_purchase_response(response, state, ec.trust())
    assert opened.rrpid == state.rrpid
    assert list(opened.payloads) == list(RECEIVED)


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("rrpid", ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        ("chall_c", ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        ("xid", ErrorCode.ERROR_CODE_UNKNOWN_XID),
    ],
)
def test_wallet_refuses_a_pres_for_another_purchase(ec: Certified, field: str, code: int) -> None:
    response, state = _pres(_shop(ec), **{field: new_id()})
    refused(code, open_purchase_response, response, state, ec.trust())


def test_wallet_refuses_a_pres_signed_by_another_merchant(ec: Certified) -> None:
    response, state = _pres(_shop(ec), ec.other_merchant)
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, open_purchase_response, response, state,
        ec.trust(),
    )  # fmt: skip
    assert f"signed by merchant {ec.other_merchant_id!r}" in reason


# --- the plaintext headers the wallet receives (SET-PROTOCOL.md 3.1) ------------------


RESPONSE_HEADER_IDS = pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])


def _named(trans: common_pb2.TransIDs, rrpid: bytes) -> common_pb2.Header:
    """A response header naming every signed id, as the merchant's checkout may."""
    return purchase.header(rrpid=rrpid, xid=trans.xid, lid_c=trans.lid_c, lid_m=trans.lid_m)


@RESPONSE_HEADER_IDS
def test_wallet_refuses_a_pinitres_header_naming_other_ids(ec: Certified, field: str) -> None:
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c", lid_m=b"lid-m")
    trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id(), **_offered())
    gateway = (ec.gateway.key_exchange_cert or b"", (ec.world.brand.gateway_ca.ca.der,))
    response = build_pinit_response(ec.merchant, request, trans, new_id(), *gateway)
    assert open_pinit_response(response, state, ec.trust()).trans_ids.xid == trans.xid
    response.header.CopyFrom(_named(trans, state.rrpid))
    assert open_pinit_response(response, state, ec.trust()).trans_ids.xid == trans.xid
    _forge(response.header, field)
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_pinit_response, response, state,
        ec.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason


@RESPONSE_HEADER_IDS
def test_wallet_refuses_a_pres_header_naming_other_ids(ec: Certified, field: str) -> None:
    response, state = _pres(_shop(ec))
    response.header.CopyFrom(_named(state.trans_ids, state.rrpid))
    assert open_purchase_response(response, state, ec.trust()).rrpid == state.rrpid
    _forge(response.header, field)
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_purchase_response, response, state,
        ec.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason


@RESPONSE_HEADER_IDS
def test_wallet_refuses_an_inqres_header_naming_other_ids(ec: Certified, field: str) -> None:
    shop = _shop(ec)
    _, bought = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    _, state = build_inquiry_request(shop.cardholder, bought)
    signed = build_purchase_response(
        ec.merchant, bought.trans_ids, state.rrpid, state.chall_c2, RECEIVED
    )
    response = purchase_pb2.InquiryResponse(
        header=_named(bought.trans_ids, state.rrpid), inq_res=signed
    )
    assert open_inquiry_response(response, state, ec.trust()).rrpid == state.rrpid
    _forge(response.header, field)
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_inquiry_response, response, state,
        ec.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason
