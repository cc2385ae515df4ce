"""The gateway's AuthReq checks (SET-PROTOCOL.md 6.2, 9.3): each refuses for its own reason.

The purchase that precedes each AuthReq is built with ``test_purchase``'s shop; the
AuthReq is then built honestly and altered where the check under test looks, and only
there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hsm.base import KeyBackend
from setcore import authorization, purchase
from setcore.authorization import (
    CAP_TOKEN_CT,
    AuthDecision,
    AuthRequestState,
    AuthResult,
    VerifiedAuthRequest,
    build_auth_request,
    build_auth_response,
    open_auth_request,
    open_auth_response,
    open_cap_token,
    open_payment_instruction,
)
from setcore.dualsig import DualSignedPurchase, MerchantView
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.profiles import EC
from setcore.purchase import Order, open_purchase_request
from setpay.v1 import authorization_pb2, common_pb2, crypto_pb2, purchase_pb2

from .certified import Certified, certify, eur, refused
from .pinning_support import gateway_of
from .test_purchase import Shop, _preq, _shop


@pytest.fixture
def ec(backend: KeyBackend) -> Certified:
    return certify(backend, EC)


@dataclass
class Bought:
    """A verified purchase, as the merchant holds it when it asks for authorization."""

    shop: Shop
    view: MerchantView


def _bought(c: Certified, order: Order | None = None) -> Bought:
    shop = _shop(c)
    preq = purchase_pb2.PurchaseRequest.FromString(_preq(shop, order))
    return Bought(shop, open_purchase_request(preq))


def _auth_req(bought: Bought, **change: object) -> authorization_pb2.AuthorizeRequest:
    shop, view = bought.shop, bought.view
    args = {
        "trans_ids": shop.order.trans_ids, "oi_bytes": view.oi_bytes,
        "order_description": shop.order.description, "purchase_amount": shop.order.amount,
        "od_salt": view.oi_data.od_salt, "auth_amount": shop.order.amount,
        "merchant_id": shop.c.merchant_id, **change,
    }  # fmt: skip
    request, _ = build_auth_request(
        shop.c.merchant,
        shop.c.gateway_kex,
        view.pi_bytes,
        **args,  # type: ignore[arg-type]
    )
    return request


def _open(c: Certified, request: authorization_pb2.AuthorizeRequest) -> VerifiedAuthRequest:
    return open_auth_request(request, c.gateway, c.trust())


# --- the amount: currency, amount and exponent (finding: exp10 was ignored) -----------


@pytest.mark.parametrize(
    "exp10",
    [
        0,  # the same digits, a hundred times the sum
        1,  # 199: the same sum, in another unit; never rescaled
        3,
        -7,
        5,
        2**31 - 1,
    ],
)
def test_an_auth_amount_not_in_the_currencys_minor_unit_is_refused(
    ec: Certified, exp10: int
) -> None:
    # The purchase is 1999 euro cents; the ledger counts cents, so an AuthReq amount at
    # any other exponent is refused before it could be booked as another sum.
    request = _auth_req(_bought(ec), auth_amount=eur(1999, exp10=exp10))
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, ec, request)
    assert "exponent must be 2 for currency 978" in reason


@pytest.mark.parametrize("currency", [1, 2, 694])  # unassigned, unassigned, SLL (withdrawn)
def test_an_auth_amount_in_a_code_iso_4217_does_not_list_now_is_refused_by_its_number(
    ec: Certified, currency: int
) -> None:
    request = _auth_req(_bought(ec), auth_amount=eur(1999, currency))
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open, ec, request)
    assert f"currency {currency} " in reason and "ISO 4217" in reason


@pytest.mark.parametrize("currency", [1, 2, 694])
def test_the_wallet_refuses_a_purchase_in_a_code_iso_4217_does_not_list_now(
    ec: Certified, currency: int
) -> None:
    shop = _shop(ec)
    order = Order(b"1 book", eur(1999, currency))
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _preq, shop, order)
    assert f"currency {currency} " in reason and "ISO 4217" in reason


def test_the_wallet_refuses_a_purchase_amount_exponent_outside_iso_4217(ec: Certified) -> None:
    shop = _shop(ec)
    order = Order(b"1 book", common_pb2.CurrencyAmount(currency=978, amount=1999, exp10=-7))
    assert "exponent" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _preq, shop, order)


# --- the plaintext header is only a hint (SET-PROTOCOL.md 3.1, 11.1 rule 6) ---------


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_a_header_naming_other_ids_than_the_signed_ones_is_refused(
    ec: Certified, field: str
) -> None:
    request = _auth_req(_bought(ec))
    setattr(request.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open, ec, request)


def test_a_header_naming_no_ids_is_accepted(ec: Certified) -> None:
    request = _auth_req(_bought(ec))
    request.header.Clear()
    assert _open(ec, request).xid


# --- the ids, the merchant and the response key (check_rr_tags and the envelope) -----


def _binding(monkeypatch: pytest.MonkeyPatch, **ids: bytes) -> None:
    """Make the merchant's next envelope bound to ``ids`` rather than the signed ones."""
    real = authorization.seal_with_baggage

    def rebound(*args: Any, **kwargs: Any) -> crypto_pb2.SealedWithBaggage:
        return real(*args, **{**kwargs, **ids})

    monkeypatch.setattr(authorization, "seal_with_baggage", rebound)


def test_a_subsequent_authorization_is_refused_as_not_supported(
    ec: Certified, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed by the merchant, so only the gateway's own rule can refuse it: setpay issues
    # no AuthToken, and a PI is good for one decision.
    real = authorization.seal_with_baggage

    def subsequent(backend: Any, key: Any, thumb: Any, ct: str, data: bytes, *rest: Any,
                   **kwargs: Any) -> crypto_pb2.SealedWithBaggage:  # fmt: skip
        changed = authorization_pb2.AuthReqData.FromString(data)
        changed.auth_req_payload.subsequent_auth_ind = True
        return real(backend, key, thumb, ct, changed.SerializeToString(), *rest, **kwargs)

    monkeypatch.setattr(authorization, "seal_with_baggage", subsequent)
    request = _auth_req(_bought(ec))
    reason = refused(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, _open, ec, request)
    assert "subsequent authorizations" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid"])
def test_an_envelope_bound_to_other_ids_than_the_signed_ones_is_refused(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    bought = _bought(ec)
    _binding(monkeypatch, **{field: new_id()})
    request = _auth_req(bought)  # the header names the signed ids: only the envelope differs
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open, ec, request)
    assert f"envelope {field.upper()} differs" in reason


def test_a_merchant_id_other_than_the_certificates_is_refused(ec: Certified) -> None:
    request = _auth_req(_bought(ec), merchant_id=ec.other_merchant_id)
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, ec, request)
    assert "MerchantID" in reason


def test_a_response_key_of_another_merchant_is_refused(ec: Certified) -> None:
    bought = _bought(ec)
    # Signed by this merchant, naming (and carrying) the other merchant's key-exchange
    # certificate, of the same Merchant CA, for the answer.
    other = ec.other_merchant
    mixed = dataclasses.replace(
        ec.merchant, key_exchange_key=other.key_exchange_key,
        key_exchange_cert=other.key_exchange_cert,
    )  # fmt: skip
    shop = dataclasses.replace(bought.shop, c=dataclasses.replace(ec, merchant=mixed))
    request = _auth_req(dataclasses.replace(bought, shop=shop))
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, ec, request)
    assert "response key" in reason


# --- the PI's own fields --------------------------------------------------------------


def test_a_pi_with_an_exnonce_of_another_length_is_refused(
    ec: Certified, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = purchase.build_dual_signed

    def short_nonce(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet dual-signs PANData whose EXNonce is 16 bytes; all else is honest.
        *before, pan_data, gateway = args
        pan = purchase_pb2.PANData.FromString(pan_data)
        pan.ex_nonce = b"n" * 16
        return real(*before, pan.SerializeToString(), gateway, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", short_nonce)
    bought = _bought(ec)
    verified = _open(ec, _auth_req(bought))
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        open_payment_instruction, verified, ec.gateway, ec.trust(),
    )  # fmt: skip
    assert "EXNonce" in reason


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("pan", "not-a-card", "no valid PAN"), ("card_expiry", "12/30", "not YYYYMM")],
)
def test_a_pi_with_malformed_card_data_is_refused(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, field: str, value: str, says: str
) -> None:
    real = purchase.build_dual_signed

    def malformed(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet dual-signs PANData with one malformed field; all else is honest.
        *before, pan_data, gateway = args
        pan = purchase_pb2.PANData.FromString(pan_data)
        setattr(pan, field, value)
        return real(*before, pan.SerializeToString(), gateway, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", malformed)
    verified = _open(ec, _auth_req(_bought(ec)))
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE,
        open_payment_instruction, verified, ec.gateway, ec.trust(),
    )  # fmt: skip
    assert says in reason


# --- capture tokens ---------------------------------------------------------------------


def test_a_capture_token_sealed_under_other_ids_than_it_holds_is_refused(ec: Certified) -> None:
    merchant = ec.trust().resolve(
        ec.merchant.signature_thumb, ec.merchant.bundle(), MERCHANT, CertificateUsage.SIGNATURE
    )
    honest = ec.token(new_id(), new_id())
    data = open_cap_token(ec.token_key, honest, merchant=merchant)  # as sealed, it opens
    for ids in ({"xid": new_id(), "rrpid": data.auth_rrpid}, {"xid": data.xid, "rrpid": new_id()}):
        sealed = ec.token_key.seal(CAP_TOKEN_CT, data.SerializeToString(), **ids)
        reason = refused(
            ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH,
            open_cap_token, ec.token_key, sealed.SerializeToString(), merchant=merchant,
        )  # fmt: skip
        assert "capture token ids differ" in reason


# --- the merchant's checks of AuthRes (SET-PROTOCOL.md 9.3.2) -------------------------


def _answered(
    c: Certified, forge: Callable[[VerifiedAuthRequest], VerifiedAuthRequest] = lambda v: v
) -> tuple[bytes, AuthRequestState]:
    """An honest AuthReq, opened by the gateway, and its AuthRes built for ``forge(request)``."""
    bought = _bought(c)
    shop, view = bought.shop, bought.view
    request, state = build_auth_request(
        c.merchant, c.gateway_kex, view.pi_bytes, shop.order.trans_ids, view.oi_bytes,
        shop.order.description, shop.order.amount, view.oi_data.od_salt, shop.order.amount,
        c.merchant_id,
    )  # fmt: skip
    verified = _open(c, request)
    decision = AuthDecision(authorization_pb2.AUTH_CODE_APPROVED, shop.order.amount)
    return build_auth_response(c.gateway, forge(verified), decision), state


def _open_res(c: Certified, payload: bytes, state: AuthRequestState) -> object:
    response = authorization_pb2.AuthorizeResponse(auth_res=payload)
    return open_auth_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )


def test_an_auth_response_for_this_request_is_accepted(ec: Certified) -> None:
    payload, state = _answered(ec)
    result = _open_res(ec, payload, state)
    assert isinstance(result, AuthResult)
    assert result.auth_code == authorization_pb2.AUTH_CODE_APPROVED


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_an_auth_response_header_naming_other_ids_is_refused(ec: Certified, field: str) -> None:
    # SET-PROTOCOL.md 3.1: the merchant compares the AuthRes header with the signed AuthTags.
    bought = _bought(ec)
    request = _auth_req(bought)
    verified = _open(ec, request)
    decision = AuthDecision(authorization_pb2.AUTH_CODE_APPROVED, bought.shop.order.amount)
    state = AuthRequestState(verified.rrpid, verified.xid, verified.request_digest)
    response = authorization_pb2.AuthorizeResponse(
        header=request.header,  # as the gateway answers: the request's ids echoed
        auth_res=build_auth_response(ec.gateway, verified, decision),
    )
    gateway = gateway_of(ec)
    opened = open_auth_response(response, ec.merchant, state, ec.trust(), gateway_identity=gateway)
    assert opened.auth_code == authorization_pb2.AUTH_CODE_APPROVED
    ids = verified.data.auth_tags.trans_ids
    response.header.lid_c = ids.lid_c  # every signed id named still opens
    opened = open_auth_response(response, ec.merchant, state, ec.trust(), gateway_identity=gateway)
    assert opened.data.auth_tags == verified.data.auth_tags
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_auth_response, response, ec.merchant,
        state, ec.trust(), gateway_identity=gateway_of(ec),
    )  # fmt: skip
    assert "header ids differ" in reason


def test_an_auth_response_naming_another_merchant_is_refused(ec: Certified) -> None:
    other = ec.other_merchant_certificate()
    payload, state = _answered(ec, lambda v: dataclasses.replace(v, merchant=other))
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open_res, ec, payload, state)
    assert "another merchant" in reason


def test_an_auth_response_to_other_request_bytes_is_refused(ec: Certified) -> None:
    payload, state = _answered(ec, lambda v: dataclasses.replace(v, request_digest=new_id()))
    reason = refused(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, _open_res, ec, payload, state)
    assert "another request" in reason


def test_an_auth_response_to_another_rrpid_is_refused(ec: Certified) -> None:
    payload, state = _answered(ec)
    # The envelope is bound to the RRPID it answers: checked before anything is opened.
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_res, ec, payload,
            dataclasses.replace(state, rrpid=new_id()))  # fmt: skip


def test_an_auth_response_signed_by_a_merchant_is_refused(ec: Certified) -> None:
    bought = _bought(ec)
    verified = _open(ec, _auth_req(bought))
    decision = AuthDecision(authorization_pb2.AUTH_CODE_APPROVED, bought.shop.order.amount)
    state = AuthRequestState(verified.rrpid, verified.xid, verified.request_digest)
    payload = build_auth_response(ec.other_merchant, verified, decision)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, _open_res, ec, payload, state)
