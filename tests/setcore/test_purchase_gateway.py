"""The gateway's checks of a purchase on a real brand (SET-PROTOCOL.md 6.2, 9.3): what
the merchant's AuthReq says against what the cardholder signed, the PAN against the
certified account, and the plans setpay does not run."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from setcore import purchase
from setcore.authorization import (
    amount_agrees,
    build_auth_request,
    check_agreement,
    open_auth_request,
    open_payment_instruction,
)
from setcore.dualsig import DualSignedPurchase
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.purchase import hod, open_purchase_request
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified, eur, refused
from .test_purchase import OTHER_CARD, Shop, _preq, _shop, _verify


def _auth(shop: Shop, preq: bytes, **change: object):  # type: ignore[no-untyped-def]
    c = shop.c
    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    args = {
        "trans_ids": shop.order.trans_ids, "oi_bytes": view.oi_bytes,
        "order_description": shop.order.description, "purchase_amount": shop.order.amount,
        "od_salt": view.oi_data.od_salt, "auth_amount": shop.order.amount,
        "merchant_id": "m-0001", **change,
    }  # fmt: skip
    request, _ = build_auth_request(
        c.merchant,
        c.gateway_kex,
        view.pi_bytes,
        **args,  # type: ignore[arg-type]
    )
    verified = open_auth_request(request, c.gateway, c.trust())
    return verified, open_payment_instruction(verified, c.gateway, c.trust())


def test_gateway_accepts_an_agreeing_request(certified: Certified) -> None:
    shop = _shop(certified)
    verified, pi = _auth(shop, _preq(shop))
    check_agreement(verified, pi)
    assert amount_agrees(verified, pi)
    assert pi.pan.masked == "411111******1111"


def test_gateway_checks_what_the_merchant_says_against_what_the_cardholder_signed(
    ec: Certified,
) -> None:
    shop = _shop(ec)
    preq = _preq(shop)
    verified, pi = _auth(shop, preq, oi_bytes=b"another order information")
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, check_agreement, verified, pi)  # HOIData
    verified, pi = _auth(shop, preq, order_description=b"a car")
    refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, check_agreement, verified, pi)  # HOD2
    other = common_pb2.TransIDs()
    other.CopyFrom(shop.order.trans_ids)
    other.lid_m = b"other"
    verified, pi = _auth(shop, preq, trans_ids=other)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_XID, check_agreement, verified, pi)
    verified, pi = _auth(shop, preq, auth_amount=eur(2000))
    assert not amount_agrees(verified, pi)  # a signed decline, not an Error
    verified, pi = _auth(shop, preq, auth_amount=eur(1999, currency=840))
    assert not amount_agrees(verified, pi)


def test_gateway_refuses_a_pan_that_is_not_the_certified_account(ec: Certified) -> None:
    shop = _shop(ec)
    # The cardholder's certificate blinds VISA; the PI carries another card.
    stolen = dataclasses.replace(shop.card, pan=PAN(OTHER_CARD))
    preq = _preq(dataclasses.replace(shop, card=stolen))
    with pytest.raises(ProtocolError) as exc:
        _auth(shop, preq)
    assert exc.value.code == ErrorCode.ERROR_CODE_ACCOUNT_MISMATCH


def test_gateway_refuses_a_pi_with_a_wrong_pan_secret(ec: Certified) -> None:
    shop = _shop(ec)
    guessed = dataclasses.replace(shop.card, pan_secret=os.urandom(32))
    preq = _preq(dataclasses.replace(shop, card=guessed))
    with pytest.raises(ProtocolError) as exc:
        _auth(shop, preq)
    assert exc.value.code == ErrorCode.ERROR_CODE_ACCOUNT_MISMATCH


@pytest.mark.parametrize(
    "plan",
    [
        common_pb2.InstallRecurData(install_total_trans=12),
        common_pb2.InstallRecurData(
            recurring=common_pb2.InstallRecurData.Recurring(frequency_days=28)
        ),
        common_pb2.InstallRecurData(),  # present, naming no plan: still not a one-off PI
    ],
)
def test_gateway_refuses_a_pi_asking_for_a_plan_it_does_not_run(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, plan: common_pb2.InstallRecurData
) -> None:
    # A wallet signs an installment or recurring plan into PIHead. setpay runs no plans
    # (no AuthToken, and HOD does not carry one, so the merchant never agreed to it):
    # authorized as a one-off, the whole amount would be taken at once, on other terms
    # than the cardholder signed. Refused as a message setpay does not support.
    real = purchase.build_dual_signed

    def with_plan(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        backend, key, thumb, certs, oi_data, pi_head, *after = args
        head = purchase_pb2.PIHead.FromString(pi_head)
        head.install_recur.CopyFrom(plan)
        return real(backend, key, thumb, certs, oi_data, head.SerializeToString(), *after,
                    **kwargs)  # fmt: skip

    monkeypatch.setattr(purchase, "build_dual_signed", with_plan)
    shop = _shop(ec)
    preq = _preq(shop)
    _verify(shop, preq)  # the merchant cannot see PIHead: it accepts the purchase
    with pytest.raises(ProtocolError) as exc:
        _auth(shop, preq)
    assert exc.value.code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED
    assert "plan" in exc.value.reason


def test_hod_binds_description_amount_and_salt() -> None:
    salt = new_id()
    base = hod(b"1 book", eur(1999), salt)
    assert base != hod(b"1 book", eur(1998), salt)
    assert base != hod(b"1 book", eur(1999, currency=840), salt)
    assert base != hod(b"1 boo", eur(1999), salt)
    assert base != hod(b"1 book", eur(1999), new_id())
