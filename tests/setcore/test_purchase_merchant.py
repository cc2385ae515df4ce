"""The merchant's checks of PInitReq, PReq and InqReq on a real brand (SET-PROTOCOL.md
5.5, 3.1): each refuses a request that is malformed, names other ids in its header, or
differs from the order and the cardholder's signature, for its own reason."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from setcore import purchase
from setcore.dualsig import DualSignedPurchase
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.purchase import (
    Order,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    check_pinit_request,
    open_inquiry_request,
    open_purchase_request,
    verify_purchase,
)
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified, eur
from .refusals import refused
from .test_purchase import OTHER_CARD, _cardholder, _forge, _preq, _shop, _verify


@pytest.mark.parametrize("bin_", ["41111", "411111\n", "41111\u0661", "4111111"])
def test_merchant_refuses_a_pinitreq_whose_bin_is_not_six_ascii_digits(
    ec: Certified, bin_: str
) -> None:
    _, card = _cardholder(ec)
    request, _ = build_pinit_request(card.pan, ec.brand_id, b"lid-c", lid_m=b"lid-m")
    check_pinit_request(request)
    request.bin = bin_
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_pinit_request, request)


@pytest.mark.parametrize("language", ["", "e" * 36, "en\n", "en_GB", "d\u00e9"])
def test_merchant_refuses_a_pinitreq_language_that_is_not_a_short_tag(
    ec: Certified, language: str
) -> None:
    # The merchant copies the language into every TransIDs it signs and stores.
    _, card = _cardholder(ec)
    request, _ = build_pinit_request(card.pan, ec.brand_id, b"lid-c", language="en-GB")
    check_pinit_request(request)
    request.language = language
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_pinit_request, request)
    assert "language" in reason


# --- the plaintext headers the merchant receives (SET-PROTOCOL.md 3.1) ----------------


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_merchant_refuses_a_pinitreq_header_naming_other_ids(ec: Certified, field: str) -> None:
    _, card = _cardholder(ec)
    request, _ = build_pinit_request(card.pan, ec.brand_id, b"lid-c", lid_m=b"lid-m")
    check_pinit_request(request)  # as built, the header names the request's own ids
    _forge(request.header, field)
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, check_pinit_request, request)
    assert "header ids differ" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_merchant_refuses_a_preq_header_naming_other_ids(ec: Certified, field: str) -> None:
    shop = _shop(ec)
    request = purchase_pb2.PurchaseRequest.FromString(_preq(shop))
    _forge(request.header, field)
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_purchase_request, request)
    assert "header ids differ" in reason


def test_merchant_accepts_a_preq_header_naming_no_ids(ec: Certified) -> None:
    shop = _shop(ec)
    request = purchase_pb2.PurchaseRequest.FromString(_preq(shop))
    request.header.Clear()
    view = open_purchase_request(request)
    assert verify_purchase(view, shop.order, ec.trust()).thumbprint == (
        shop.cardholder.signature_thumb
    )


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_merchant_refuses_an_inqreq_header_naming_other_ids(ec: Certified, field: str) -> None:
    shop = _shop(ec)
    _, bought = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    request, state = build_inquiry_request(shop.cardholder, bought)
    thumb = shop.cardholder.signature_thumb
    assert open_inquiry_request(request, thumb, ec.trust()).rrpid == state.rrpid
    _forge(request.header, field)
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_inquiry_request, request, thumb, ec.trust()
    )
    assert "header ids differ" in reason


# --- the merchant's checks of PReq (SET-PROTOCOL.md 5.5) ------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("xid", ErrorCode.ERROR_CODE_UNKNOWN_XID),
        ("lid_m", ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ("preq_date", ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        ("chall_m", ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        ("description", ErrorCode.ERROR_CODE_DIGEST_MISMATCH),
        ("amount", ErrorCode.ERROR_CODE_DIGEST_MISMATCH),
        ("brand", ErrorCode.ERROR_CODE_DECODING_FAILURE),
    ],
)
def test_merchant_checks_each_part_of_the_order(ec: Certified, change: str, code: int) -> None:
    shop = _shop(ec)
    preq = _preq(shop)
    order = shop.order
    trans = common_pb2.TransIDs()
    trans.CopyFrom(order.trans_ids)
    if change == "xid":
        trans.xid = new_id()
    elif change == "lid_m":
        trans.lid_m = b"other"
    elif change == "preq_date":
        trans.preq_date_unix_ms += 1
    order = dataclasses.replace(order, trans_ids=trans)
    if change == "chall_m":
        order = dataclasses.replace(order, chall_m=new_id())
    elif change == "description":
        order = dataclasses.replace(order, description=b"2 books")
    elif change == "amount":
        order = dataclasses.replace(order, amount=eur(999))
    elif change == "brand":
        order = dataclasses.replace(order, brand_id="other-brand")
    refused(code, _verify, shop, preq, order)


def test_merchant_refuses_a_cardholder_certified_by_another_brand_than_the_order(
    ec: Certified,
) -> None:
    # The wallet asked for another brand than its card's, and the merchant, which takes
    # that brand too, recorded the order under it: OIData and order agree on the brand,
    # but the cardholder's certificate chains to this brand's root, not to that one.
    shop = _shop(ec)
    other = "other-brand"
    shop = dataclasses.replace(
        shop,
        state=dataclasses.replace(shop.state, brand_id=other),
        order=dataclasses.replace(shop.order, brand_id=other),
    )
    reason = refused(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, _verify, shop, _preq(shop))
    assert reason == "cardholder of another brand"


@pytest.mark.parametrize(("field", "name"), [("rrpid", "RRPID"), ("chall_c", "Chall-C"),
                                            ("od_salt", "ODSalt")])  # fmt: skip
def test_merchant_refuses_oidata_ids_of_another_length(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, field: str, name: str
) -> None:
    real = purchase.build_dual_signed

    def short(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet dual-signs OIData with one 16-byte id; all else is honest.
        backend, key, thumb, certs, oi_data, *after = args
        oi = purchase_pb2.OIData.FromString(oi_data)
        setattr(oi, field, b"i" * 16)
        return real(backend, key, thumb, certs, oi.SerializeToString(), *after, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", short)
    shop = _shop(ec)
    request = purchase_pb2.PurchaseRequest.FromString(_preq(shop))
    request.header.Clear()  # only the signed OIData is under test
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _verify, shop,
                     request.SerializeToString())  # fmt: skip
    assert f"{name} must be" in reason


def test_merchant_refuses_another_cardholders_signature(ec: Certified) -> None:
    shop = _shop(ec)
    impostor, _ = _cardholder(ec, OTHER_CARD)
    # Signed by the impostor's key but claiming the real cardholder's certificate.
    forged = dataclasses.replace(shop, cardholder=dataclasses.replace(
        shop.cardholder, signature_key=impostor.signature_key))  # fmt: skip
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, _verify, shop, _preq(forged))
