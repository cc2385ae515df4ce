"""Checks that no other test pinned: each refused for its own code and reason, on a real
brand (the message header's version, SET-PROTOCOL.md 3.1 and 7.6; the merchant id a PI
names, 9.3; InqReq's Chall-C2, 5.7), and the fresh nonce every SET Error carries (7.6)."""

from __future__ import annotations

import dataclasses

import pytest

from setcore import purchase
from setcore.authorization import check_agreement, open_payment_instruction
from setcore.error_message import build_error
from setcore.errors import ErrorCode
from setcore.freshness import ID_BYTES, new_id
from setcore.purchase import (
    INQ_REQ_CT,
    Order,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    check_pinit_request,
    header,
    open_inquiry_request,
    open_purchase_request,
)
from setcore.signed import parse_signed, sign
from setpay.v1 import error_pb2, purchase_pb2

from .certified import Certified, eur
from .refusals import refused
from .test_authorization import Bought, _auth_req, _open, ec  # noqa: F401
from .test_purchase import _cardholder, _preq, _shop

# --- the header's version (SET 3.1, 7.6) ----------------------------------------------


def _pinit_request(c: Certified) -> purchase_pb2.PInitRequest:
    _, card = _cardholder(c)
    request, _ = build_pinit_request(card.pan, c.brand_id, b"lid-c", lid_m=b"lid-m")
    return request


def test_a_header_of_a_newer_version_is_refused(ec: Certified) -> None:  # noqa: F811
    request = _pinit_request(ec)
    check_pinit_request(request)
    request.header.version = purchase.PROTOCOL_VERSION + 1
    reason = refused(ErrorCode.ERROR_CODE_VERSION_TOO_NEW, check_pinit_request, request)
    assert reason == f"header version {purchase.PROTOCOL_VERSION + 1}, not 1"


def test_a_header_of_an_older_version_is_refused(
    ec: Certified,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Version 1 is the first; an older one than ours exists only once we speak a newer.
    request = _pinit_request(ec)
    assert request.header.version == 1
    monkeypatch.setattr(purchase, "PROTOCOL_VERSION", 2)
    reason = refused(ErrorCode.ERROR_CODE_VERSION_TOO_OLD, check_pinit_request, request)
    assert reason == "header version 1, not 2"


def test_a_header_without_a_version_is_let_through_as_its_ids_are(ec: Certified) -> None:  # noqa: F811
    # The plaintext header is only a hint: a message may come without one at all.
    request = _pinit_request(ec)
    request.header.version = 0
    check_pinit_request(request)


def test_every_sender_writes_the_version_it_speaks() -> None:
    assert header(rrpid=new_id()).version == purchase.PROTOCOL_VERSION == 1


# --- the merchant a PI names (SET 9.3) -------------------------------------------------


def test_a_pi_naming_another_merchant_id_with_the_right_certificate_is_refused(
    ec: Certified,  # noqa: F811
) -> None:
    # The cardholder signs a PI naming the merchant's own signature certificate but
    # another merchant id (the offer's certificate read as another's): only the id
    # differs from what the AuthReq's signer is.
    shop = _shop(ec)
    merchant = shop.offer.merchant
    assert merchant.merchant_data is not None
    other = dataclasses.replace(merchant.merchant_data, merchant_id=f"not-{ec.merchant_id}")
    offer = dataclasses.replace(
        shop.offer, merchant=dataclasses.replace(merchant, merchant_data=other)
    )
    shop = dataclasses.replace(shop, offer=offer)
    preq = purchase_pb2.PurchaseRequest.FromString(_preq(shop))
    opened = _open(ec, _auth_req(Bought(shop, open_purchase_request(preq))))
    pi = open_payment_instruction(opened, ec.gateway, ec.trust())
    assert pi.head.merchant_sig_cert_thumb == opened.merchant.thumbprint
    assert pi.head.merchant_id != opened.merchant_id
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, check_agreement, opened, pi)
    assert reason == "PI names another merchant"


# --- InqReq's fresh challenge (SET 5.7) ------------------------------------------------


@pytest.mark.parametrize("chall_c2", [b"", b"c" * (ID_BYTES - 1), b"c" * (ID_BYTES + 1)])
def test_an_inqreq_whose_chall_c2_is_not_an_id_is_refused(
    ec: Certified,  # noqa: F811
    chall_c2: bytes,
) -> None:
    shop = _shop(ec)
    _, bought = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    good, _ = build_inquiry_request(shop.cardholder, bought)
    thumb = shop.cardholder.signature_thumb
    open_inquiry_request(good, thumb, ec.trust())
    # The same InqReq, signed by the same cardholder, with a challenge of another length.
    holder, rrpid = shop.cardholder, new_id()
    data = purchase_pb2.InqReqData(
        content_type=INQ_REQ_CT, trans_ids=bought.trans_ids, rrpid=rrpid, chall_c2=chall_c2
    ).SerializeToString()
    signed = sign(
        holder.backend, holder.signature_key, holder.signature_thumb, INQ_REQ_CT, data,
        holder.bundle(),
    )  # fmt: skip
    request = purchase_pb2.InquiryRequest(
        header=header(rrpid=rrpid, xid=bought.trans_ids.xid), inq_req=signed.SerializeToString()
    )
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_inquiry_request, request, thumb, ec.trust()
    )
    assert reason == f"Chall-C2 must be {ID_BYTES} bytes"


# --- the Error's nonce (SET 7.6) -------------------------------------------------------


def test_every_error_carries_a_fresh_nonce(ec: Certified) -> None:  # noqa: F811
    # ErrorNonce: the signer never signs data an attacker could predict.
    code = ErrorCode.ERROR_CODE_DECODING_FAILURE
    signed = [build_error(ec.gateway, code, rrpid=new_id()) for _ in range(2)]
    plain = [build_error(None, code) for _ in range(2)]
    nonces = [
        error_pb2.ErrorTBS.FromString(parse_signed(e.signed_error).tbs).error_nonce for e in signed
    ] + [e.unsigned_error.error_nonce for e in plain]
    assert [len(n) for n in nonces] == [ID_BYTES] * 4
    assert len(set(nonces)) == 4
