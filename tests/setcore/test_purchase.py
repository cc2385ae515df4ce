"""Purchase and authorization messages on a real brand: every wallet, merchant and gateway
check of SET-PROTOCOL.md 5.2, 5.5, 6.2 and 9.3 fails for its own reason."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import pytest

from hsm.base import KeyBackend, KeyUsage
from setcore import purchase
from setcore.authorization import (
    amount_agrees,
    build_auth_request,
    check_agreement,
    open_auth_request,
    open_payment_instruction,
)
from setcore.credentials import Credentials
from setcore.dualsig import DualSignedPurchase
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN, blinded_account
from setcore.pki.issuance import card_expiry_end, issue_cardholder
from setcore.profiles import EC
from setcore.purchase import (
    CardData,
    MerchantOffer,
    MerchantOrder,
    Order,
    PInitState,
    PurchaseState,
    build_inquiry_request,
    build_pinit_request,
    build_pinit_response,
    build_purchase_request,
    build_purchase_response,
    check_pinit_request,
    hod,
    open_inquiry_request,
    open_inquiry_response,
    open_pinit_response,
    open_purchase_request,
    open_purchase_response,
    verify_purchase,
)
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified, certify, eur, refused

VISA = "4111111111111111"
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
        lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id(), preq_date_unix_ms=now_ms()
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


@pytest.fixture
def ec(backend: KeyBackend) -> Certified:
    return certify(backend, EC)


def test_purchase_round_trip(certified: Certified) -> None:
    shop = _shop(certified)
    from setpay.v1 import purchase_pb2

    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(_preq(shop)))
    cardholder = verify_purchase(view, shop.order, certified.trust())
    assert cardholder.thumbprint == shop.cardholder.signature_thumb


# --- the wallet's checks of PInitRes -------------------------------------------------


def test_wallet_refuses_a_merchant_key_exchange_cert_as_the_gateway(ec: Certified) -> None:
    # The merchant names its own key-exchange certificate where a gateway's is required.
    with pytest.raises(ProtocolError) as exc:
        _shop(ec, gateway_kex=ec.merchant.key_exchange_cert)
    assert exc.value.code == ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE


def test_wallet_refuses_a_pinitres_for_another_request(ec: Certified) -> None:
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(lid_c=b"lid-c", xid=new_id())
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
        trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=lid_m, xid=new_id())
        response = build_pinit_response(ec.merchant, request, trans, new_id(), *gateway)
        reason = refused(ErrorCode.ERROR_CODE_UNKNOWN_LID, open_pinit_response, response, state,
                         ec.trust())  # fmt: skip
        assert "LID-M" in reason
    trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id())
    response = build_pinit_response(ec.merchant, request, trans, new_id(), *gateway)
    assert open_pinit_response(response, state, ec.trust()).trans_ids.lid_m == b"lid-m"


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


def _forge(header: common_pb2.Header, field: str) -> None:
    setattr(header, field, new_id() if field in ("rrpid", "xid") else b"forged")


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


# --- the wallet's checks of PRes (SET-PROTOCOL.md 5.6, 3.3) --------------------------


def _pres(
    shop: Shop, merchant: Credentials | None = None, **change: bytes
) -> tuple[purchase_pb2.PurchaseResponse, PurchaseState]:
    """A PRes for the shop's purchase, as ``merchant`` signs it, with ids ``change``d."""
    _, bought = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    trans = common_pb2.TransIDs()
    trans.CopyFrom(bought.trans_ids)
    trans.xid = change.get("xid", trans.xid)
    signed = build_purchase_response(
        merchant or shop.c.merchant, trans, change.get("rrpid", bought.rrpid),
        change.get("chall_c", bought.chall_c), [],
    )  # fmt: skip
    return purchase_pb2.PurchaseResponse(p_res=signed), bought


def test_wallet_accepts_the_pres_of_its_purchase(ec: Certified) -> None:
    response, state = _pres(_shop(ec))
    assert open_purchase_response(response, state, ec.trust()).rrpid == state.rrpid


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
    assert "unexpected party" in reason


# --- the plaintext headers the wallet receives (SET-PROTOCOL.md 3.1) ------------------

RESPONSE_HEADER_IDS = pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])


def _named(trans: common_pb2.TransIDs, rrpid: bytes) -> common_pb2.Header:
    """A response header naming every signed id, as the merchant's checkout may."""
    return purchase.header(rrpid=rrpid, xid=trans.xid, lid_c=trans.lid_c, lid_m=trans.lid_m)


@RESPONSE_HEADER_IDS
def test_wallet_refuses_a_pinitres_header_naming_other_ids(ec: Certified, field: str) -> None:
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c", lid_m=b"lid-m")
    trans = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=new_id())
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
    signed = build_purchase_response(ec.merchant, bought.trans_ids, state.rrpid, state.chall_c2, [])
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


# --- the merchant's checks of PReq (SET-PROTOCOL.md 5.5) ------------------------------


def _verify(shop: Shop, preq: bytes, order: MerchantOrder | None = None) -> object:
    from setpay.v1 import purchase_pb2

    view = open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    return verify_purchase(view, order or shop.order, shop.c.trust())


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
    impostor, _ = _cardholder(ec, "5555555555554444")
    # Signed by the impostor's key but claiming the real cardholder's certificate.
    forged = dataclasses.replace(shop, cardholder=dataclasses.replace(
        shop.cardholder, signature_key=impostor.signature_key))  # fmt: skip
    refused(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, _verify, shop, _preq(forged))


# --- the gateway's checks (SET-PROTOCOL.md 6.2, 9.3) --------------------------------


def _auth(shop: Shop, preq: bytes, **change: object):  # type: ignore[no-untyped-def]
    from setpay.v1 import purchase_pb2

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
    stolen = dataclasses.replace(shop.card, pan=PAN("5555555555554444"))
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
