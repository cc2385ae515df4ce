"""The wallet's checks of the merchant's answers, each refusing for its own SET code:

* PInitRes: signed by a merchant (not a gateway), naming by PEThumb a gateway
  key-exchange certificate that is present, unrevoked and not the gateway's signature
  certificate, with an XID and Chall-M of the protocol's size (SET-PROTOCOL.md 5.2);
* PRes and InqRes: about the offered transaction, every TransIDs field (5.6, 5.7),
  reporting one outcome (one payload, with a completion code) and no amount above the
  agreed one or in another unit (9.3 item 11);
* an Error in their place: the merchant's word only if that merchant signed it (7.6).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509

from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.error_message import ERROR_CT, build_error, request_digest
from setcore.errors import MAX_QUOTED_CHARS, ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.purchase import (
    PINIT_RES_CT,
    InquiryState,
    Order,
    PInitState,
    PurchaseState,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    build_purchase_response,
    open_inquiry_response,
    open_pinit_response,
    open_purchase_response,
)
from setcore.signed import sign
from setpay.v1 import authorization_pb2, common_pb2, error_pb2, purchase_pb2

from .certified import Certified, eur, refused
from .test_purchase import Shop, _cardholder, _shop

AGREED = 1999
USD = 840
JPY = 392  # no minor unit: exponent 0

# --- PInitRes (SET-PROTOCOL.md 5.2) ---------------------------------------------------


def _pinit(
    c: Certified,
    *,
    signer: Credentials | None = None,
    xid: bytes | None = None,
    chall_m: bytes | None = None,
    pe_thumb: bytes | None = None,
    bag: tuple[bytes, ...] | None = None,
) -> tuple[purchase_pb2.PInitResponse, PInitState]:
    """A PInitRes signed as ``signer`` (the merchant) would, with any field replaced;
    ``bag``: the certificates it carries besides the signer's (the gateway's by default)."""
    _, card = _cardholder(c)
    request, state = build_pinit_request(card.pan, c.brand_id, b"lid-c")
    gateway_kex = c.gateway.key_exchange_cert or b""
    data = purchase_pb2.PInitResData(
        content_type=PINIT_RES_CT,
        trans_ids=common_pb2.TransIDs(
            lid_c=b"lid-c", xid=new_id() if xid is None else xid, preq_date_unix_ms=now_ms(),
            language="en",
        ),
        rrpid=request.rrpid, chall_c=request.chall_c,
        chall_m=new_id() if chall_m is None else chall_m,
        pe_thumb=thumbprint(gateway_kex) if pe_thumb is None else pe_thumb,
    ).SerializeToString()  # fmt: skip
    party = signer or c.merchant
    bundle = party.bundle()
    extra = (gateway_kex, c.world.brand.gateway_ca.ca.der) if bag is None else bag
    bundle.certificates.extend(d for d in extra if d not in bundle.certificates)
    signed = sign(
        party.backend, party.signature_key, party.signature_thumb, PINIT_RES_CT, data, bundle
    )
    return purchase_pb2.PInitResponse(p_init_res=signed.SerializeToString()), state


def test_the_pinitres_built_here_is_accepted(ec: Certified) -> None:
    response, state = _pinit(ec)
    offer = open_pinit_response(response, state, ec.trust())
    assert offer.gateway.thumbprint == thumbprint(ec.gateway.key_exchange_cert or b"")


def test_a_pinitres_signed_by_the_gateway_is_refused(ec: Certified) -> None:
    response, state = _pinit(ec, signer=ec.gateway)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, open_pinit_response, response, state,
            ec.trust())  # fmt: skip


def test_a_pethumb_naming_the_gateways_signature_certificate_is_refused(ec: Certified) -> None:
    # A gateway certificate, of the right brand, but not one the PI may be sealed to.
    signature_cert = ec.gateway.signature_cert
    response, state = _pinit(
        ec, pe_thumb=thumbprint(signature_cert),
        bag=(signature_cert, ec.world.brand.gateway_ca.ca.der),
    )  # fmt: skip
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, open_pinit_response, response, state,
            ec.trust())  # fmt: skip


@pytest.mark.parametrize("field", ["xid", "chall_m"])
@pytest.mark.parametrize("size", [0, 1, 31, 33])
def test_an_xid_or_chall_m_of_another_size_is_refused(ec: Certified, field: str, size: int) -> None:
    wrong = b"\x01" * size
    if field == "xid":
        response, state = _pinit(ec, xid=wrong)
    else:
        response, state = _pinit(ec, chall_m=wrong)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, open_pinit_response, response, state,
            ec.trust())  # fmt: skip


def test_a_pethumb_naming_no_certificate_at_hand_is_refused(ec: Certified) -> None:
    # Named, but neither in the bag nor in the wallet's store.
    response, state = _pinit(ec, bag=(ec.world.brand.gateway_ca.ca.der,))
    refused(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, open_pinit_response, response, state,
            ec.trust())  # fmt: skip
    response, state = _pinit(ec, pe_thumb=new_id())
    refused(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, open_pinit_response, response, state,
            ec.trust())  # fmt: skip


def test_a_pethumb_naming_a_revoked_gateway_certificate_is_refused(ec: Certified) -> None:
    serial = x509.load_der_x509_certificate(ec.gateway.key_exchange_cert or b"").serial_number
    trust = ec.trust()
    bci, crls = ec.world.publish(2, {ec.world.brand.gateway_ca.ca.thumbprint: [serial]})
    trust.update_revocation(bci, crls)
    response, state = _pinit(ec)
    refused(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, open_pinit_response, response, state, trust)


def test_an_error_for_pinit_is_the_merchants_word_only_if_a_merchant_signed_it(
    ec: Certified,
) -> None:
    _, state = _pinit(ec)
    code = ErrorCode.ERROR_CODE_UNKNOWN_LID
    error = build_error(ec.merchant, code, rrpid=state.rrpid, request=state.request_digest)
    answer = purchase_pb2.PInitResponse(error=error)
    with pytest.raises(PeerError) as caught:
        open_pinit_response(answer, state, ec.trust())
    assert caught.value.code == code
    error = build_error(ec.gateway, code, rrpid=state.rrpid, request=state.request_digest)
    answer = purchase_pb2.PInitResponse(error=error)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, open_pinit_response, answer, state,
            ec.trust())  # fmt: skip


# --- PRes and InqRes (SET-PROTOCOL.md 5.6, 5.7) ---------------------------------------


def _bought(shop: Shop) -> PurchaseState:
    _, state = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(AGREED)), shop.card, shop.state
    )
    return state


def _payload(
    auth: common_pb2.CurrencyAmount | None = None,
    captured: common_pb2.CurrencyAmount | None = None,
    credited: common_pb2.CurrencyAmount | None = None,
) -> purchase_pb2.PResPayload:
    payload = purchase_pb2.PResPayload(
        completion_code=purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED,
        auth_code=authorization_pb2.AUTH_CODE_APPROVED,
    )
    for field, amount in (("auth_amt", auth), ("captured_amt", captured),
                          ("credited_amt", credited)):  # fmt: skip
        if amount is not None:
            getattr(payload, field).CopyFrom(amount)
    return payload


Opener = Callable[..., purchase_pb2.PResData]
# How each answer is made and opened: PRes echoes the PReq's RRPID and Chall-C, InqRes
# the InqReq's RRPID and Chall-C2; both are PResData signed by the merchant.
ANSWERS = pytest.mark.parametrize("kind", ["PRes", "InqRes"])


def _answer(
    shop: Shop,
    kind: str,
    *,
    trans: common_pb2.TransIDs | None = None,
    payloads: tuple[purchase_pb2.PResPayload, ...] = (),
    merchant: Credentials | None = None,
    rrpid: bytes | None = None,
    chall: bytes | None = None,
) -> tuple[object, PurchaseState | InquiryState, Opener]:
    """An answer of ``kind`` to the shop's purchase, any of its parts replaced."""
    bought = _bought(shop)
    state: PurchaseState | InquiryState = bought
    echo_rrpid, echo_chall = bought.rrpid, bought.chall_c
    if kind == "InqRes":
        _, state = build_inquiry_request(shop.cardholder, bought)
        echo_rrpid, echo_chall = state.rrpid, state.chall_c2
    signed = build_purchase_response(
        merchant or shop.c.merchant, bought.trans_ids if trans is None else trans,
        echo_rrpid if rrpid is None else rrpid, echo_chall if chall is None else chall,
        list(payloads),
    )  # fmt: skip
    if kind == "PRes":
        return purchase_pb2.PurchaseResponse(p_res=signed), state, open_purchase_response
    return purchase_pb2.InquiryResponse(inq_res=signed), state, open_inquiry_response


def _other_ids(shop: Shop, **change: object) -> common_pb2.TransIDs:
    trans = common_pb2.TransIDs()
    trans.CopyFrom(shop.offer.trans_ids)
    for field, value in change.items():
        setattr(trans, field, value)
    return trans


@ANSWERS
def test_an_answer_about_the_purchase_is_accepted(ec: Certified, kind: str) -> None:
    # Partly authorized, partly captured, partly refunded: all within what was agreed.
    payload = _payload(eur(AGREED), eur(1500), eur(500))
    response, state, opener = _answer(_shop(ec), kind, payloads=(payload,))
    assert opener(response, state, ec.trust()).payloads[0].auth_amt.amount == AGREED
    lower = _payload(eur(1200), eur(0), eur(0))  # the gateway authorized less; or a reversal
    response, state, opener = _answer(_shop(ec), kind, payloads=(lower,))
    assert opener(response, state, ec.trust()).payloads[0].auth_amt.amount == 1200


@ANSWERS
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"lid_c": b"another-lid-c"}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"lid_c": b""}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"lid_m": b"another-order"}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"lid_m": b""}, ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ({"preq_date_unix_ms": 1}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        ({"language": "fr"}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        ({"pay_sys_id": "other"}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
    ],
)
def test_an_answer_naming_other_transaction_ids_is_refused(
    ec: Certified, kind: str, change: dict[str, object], code: int
) -> None:
    # The same XID, signed by the same merchant, echoing our RRPID and challenge: only
    # the other ids say it answers another purchase.
    shop = _shop(ec)
    response, state, opener = _answer(shop, kind, trans=_other_ids(shop, **change))
    reason = refused(code, opener, response, state, ec.trust())
    assert reason.startswith(kind)


@ANSWERS
@pytest.mark.parametrize("field", ["auth", "captured", "credited"])
@pytest.mark.parametrize(
    "amount",
    [
        eur(AGREED + 1),  # more than the cardholder agreed to
        eur(AGREED, USD),  # the agreed number, in another currency
        eur(AGREED // 100, exp10=0),  # the agreed sum, counted in another unit
        eur(AGREED, JPY, exp10=0),
        eur(-1),
    ],
)
def test_an_answer_reporting_an_amount_not_agreed_is_refused(
    ec: Certified, kind: str, field: str, amount: common_pb2.CurrencyAmount
) -> None:
    payload = _payload(**{field: amount})
    response, state, opener = _answer(_shop(ec), kind, payloads=(payload,))
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, opener, response, state, ec.trust())
    assert f"{kind} reports {field}_amt {amount.amount}" in reason


@ANSWERS
@pytest.mark.parametrize(
    ("payloads", "says"),
    [
        ((), "has 0 payloads"),
        ((_payload(eur(AGREED)), _payload(eur(AGREED))), "has 2 payloads"),
        ((purchase_pb2.PResPayload(),), "has no completion code"),
        (
            (purchase_pb2.PResPayload(auth_code=authorization_pb2.AUTH_CODE_APPROVED),),
            "has no completion code",
        ),
    ],
    ids=["none", "two", "empty", "no-completion-code"],
)
def test_an_answer_that_does_not_report_one_outcome_is_refused(
    ec: Certified, kind: str, payloads: tuple[purchase_pb2.PResPayload, ...], says: str
) -> None:
    # SET-PROTOCOL.md 5.6: one payload per authorization, and setpay authorizes a purchase
    # once. Accepted, an empty answer would replace SENT with "unspecified" (nothing the
    # merchant said), and the second of two would be dropped unread.
    response, state, opener = _answer(_shop(ec), kind, payloads=payloads)
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, opener, response, state, ec.trust())
    assert reason == f"{kind} {says}" or reason.startswith(f"{kind} {says};")


@pytest.mark.parametrize(
    ("part", "code"),
    [
        ("rrpid", ErrorCode.ERROR_CODE_UNKNOWN_RRPID),
        ("chall", ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH),
        ("xid", ErrorCode.ERROR_CODE_UNKNOWN_XID),
        ("merchant", ErrorCode.ERROR_CODE_INVALID_CERTIFICATE),
    ],
)
def test_an_inqres_for_another_inquiry_or_from_another_merchant_is_refused(
    ec: Certified, part: str, code: int
) -> None:
    shop = _shop(ec)
    response, state, opener = _answer(
        shop, "InqRes", payloads=(_payload(),),
        rrpid=new_id() if part == "rrpid" else None,
        chall=new_id() if part == "chall" else None,
        trans=_other_ids(shop, xid=new_id()) if part == "xid" else None,
        merchant=ec.other_merchant if part == "merchant" else None,
    )  # fmt: skip
    refused(code, opener, response, state, ec.trust())


def test_an_inqres_answering_the_purchase_not_the_inquiry_is_refused(ec: Certified) -> None:
    # The PRes's RRPID and Chall-C replayed as an InqRes: not this inquiry's.
    shop = _shop(ec)
    bought = _bought(shop)
    _, state = build_inquiry_request(shop.cardholder, bought)
    signed = build_purchase_response(
        ec.merchant, bought.trans_ids, bought.rrpid, bought.chall_c, [_payload()]
    )
    response = purchase_pb2.InquiryResponse(inq_res=signed)
    refused(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, open_inquiry_response, response, state, ec.trust())


# --- an Error in place of PRes or InqRes (SET-PROTOCOL.md 7.6) -------------------------


def _error_answer(
    shop: Shop, kind: str, signer: Credentials, *, named: bytes | None = None
) -> tuple[object, PurchaseState | InquiryState, Opener]:
    """An Error in place of ``kind``, naming the wallet's request (or ``named``)."""
    bought = _bought(shop)
    code = ErrorCode.ERROR_CODE_UNKNOWN_XID
    if kind == "PRes":
        sent = bought.request_digest if named is None else named
        error = build_error(signer, code, rrpid=bought.rrpid, request=sent)
        return purchase_pb2.PurchaseResponse(error=error), bought, open_purchase_response
    _, inquiry = build_inquiry_request(shop.cardholder, bought)
    sent = inquiry.request_digest if named is None else named
    error = build_error(signer, code, rrpid=inquiry.rrpid, request=sent)
    return purchase_pb2.InquiryResponse(error=error), inquiry, open_inquiry_response


@ANSWERS
def test_an_error_signed_by_the_merchant_of_the_purchase_is_its_word(
    ec: Certified, kind: str
) -> None:
    response, state, opener = _error_answer(_shop(ec), kind, ec.merchant)
    with pytest.raises(PeerError) as caught:
        opener(response, state, ec.trust())
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_XID


@ANSWERS
@pytest.mark.parametrize(
    ("signer", "code", "says"),
    [
        ("gateway", ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, "MERCHANT is required"),
        ("other_merchant", ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "signed by merchant"),
    ],
)
def test_an_error_signed_by_another_party_is_not_the_merchants_word(
    ec: Certified, kind: str, signer: str, code: int, says: str
) -> None:
    # The gateway, or a merchant of the same brand but not the one the purchase was made
    # with: what it refuses says nothing of this purchase, as its PRes would not. Only a
    # merchant certificate of the purchase's merchant ID speaks for it (as for the PRes).
    response, state, opener = _error_answer(_shop(ec), kind, getattr(ec, signer))
    with pytest.raises(ProtocolError) as caught:
        opener(response, state, ec.trust())
    assert not isinstance(caught.value, PeerError)
    assert caught.value.code == code
    assert caught.value.reason.startswith("the peer's error message did not verify")
    assert says in caught.value.reason


@ANSWERS
def test_an_error_about_other_bytes_under_our_rrpid_is_not_the_merchants_word(
    ec: Certified, kind: str
) -> None:
    # Garbage sent to the merchant under the wallet's RRPID (copied from the plain header)
    # gets a genuine Error of the merchant's, naming those bytes as it received them.
    # Taken for the refusal of the wallet's own request, which the merchant may well have
    # authorized, it would have the cardholder buy again.
    frame = purchase_pb2.PurchaseRequest if kind == "PRes" else purchase_pb2.InquiryRequest
    garbage = request_digest(frame.DESCRIPTOR.full_name, b"\xff" * 64)
    response, state, opener = _error_answer(_shop(ec), kind, ec.merchant, named=garbage)
    with pytest.raises(ProtocolError) as caught:
        opener(response, state, ec.trust())
    assert not isinstance(caught.value, PeerError)
    assert caught.value.code == ErrorCode.ERROR_CODE_DIGEST_MISMATCH


def test_the_merchants_own_words_in_an_error_are_quoted(ec: Certified) -> None:
    # The Error's text is the merchant's, signed but free: what the wallet prints or logs
    # of it is one line, and bounded, whatever the merchant wrote.
    bought = _bought(_shop(ec))
    words = "declined\nsetpay wallet: purchase approved " + "x" * 500
    tbs = error_pb2.ErrorTBS(
        content_type=ERROR_CT, error_code=ErrorCode.ERROR_CODE_UNKNOWN_XID, error_nonce=new_id(),
        rrpid=bought.rrpid, bad_message_digest=bought.request_digest, error_msg=words,
        date_unix_ms=now_ms(),
    )  # fmt: skip
    m = ec.merchant
    signed = sign(m.backend, m.signature_key, m.signature_thumb, ERROR_CT,
                  tbs.SerializeToString(), m.bundle())  # fmt: skip
    answer = purchase_pb2.PurchaseResponse(
        error=error_pb2.SetError(signed_error=signed.SerializeToString())
    )
    with pytest.raises(PeerError) as caught:
        open_purchase_response(answer, bought, ec.trust())
    said = str(caught.value)
    assert "\n" not in said and len(said) < 2 * MAX_QUOTED_CHARS + 80
    assert said.startswith("peer refused the request: ERROR_CODE_UNKNOWN_XID 'declined\\n")
    assert said.endswith(f"({len(words)} characters)")
