"""AuthReq checks through the real gateway that ``test_authorize`` leaves out: what the
merchant says against what the cardholder signed, the card's expiry on file, freshness,
sales, and failures of the key backend or the acquirer's books in the middle of a request.

Each negative test changes one thing and checks the refusal's code and that nothing was
held; each failure test checks that a retry of the same bytes is answered once.
"""

from __future__ import annotations

import grpc
import pytest

from gateway import authorize as gateway_authorize
from hsm.base import KeyUsage
from hsm.errors import TransientBackendError
from setcore.authorization import AuthRequestState, build_auth_request, open_auth_response
from setcore.credentials import Credentials
from setcore.errors import PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS
from setcore.pan import blinded_account
from setcore.pki.extensions import MerchantData
from setcore.pki.issuance import card_expiry_end, issue_cardholder, issue_merchant, kem_for
from setcore.pki.roles import CertificateUsage
from setcore.purchase import CardData
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import common_pb2
from tests.clocks import clocks_moved

from .actors import (
    EUR,
    Cardholder,
    Merchant,
    Purchase,
    World,
    as_sent,
    auth_request,
    eur,
    purchase,
    register_cardholder,
    send_unsigned_answers,
)

USD = 840


def _refused(
    world: World, merchant: Merchant, request: a.AuthorizeRequest, state: AuthRequestState
) -> str:
    """The code of the signed SET Error the gateway answers ``request`` with."""
    response = world.gateway.Authorize(request)
    assert response.WhichOneof("result") == "error"
    with pytest.raises(PeerError) as caught:
        open_auth_response(
            response, merchant.credentials, as_sent(state, request), merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    return caught.value.code_name


def _decision(world: World, merchant: Merchant, request: a.AuthorizeRequest, state: object):  # type: ignore[no-untyped-def]
    result = open_auth_response(
        world.gateway.Authorize(request),
        merchant.credentials,
        state,  # type: ignore[arg-type]
        merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )
    return result.data.auth_res_payload


def _names(payload: a.AuthResPayload) -> tuple[str, str]:
    header = payload.auth_header
    return a.AuthCode.Name(header.auth_code), a.RespReason.Name(header.response_data.resp_reason)


def _said(
    merchant: Merchant,
    bought: Purchase,
    *,
    trans_ids: common_pb2.TransIDs | None = None,
    oi_bytes: bytes | None = None,
    description: bytes | None = None,
    asked: common_pb2.CurrencyAmount | None = None,
) -> tuple[a.AuthorizeRequest, object]:
    """An AuthReq for ``bought`` in which the merchant says one thing otherwise."""
    return build_auth_request(
        merchant.credentials, merchant.gateway_kex.recipient(), bought.view.pi_bytes,
        trans_ids or bought.order.trans_ids, oi_bytes or bought.view.oi_bytes,
        description or bought.order.description, bought.order.amount,
        bought.view.oi_data.od_salt, asked or bought.order.amount, merchant.merchant_id,
    )  # fmt: skip


def _pending(world: World, cardholder: Cardholder) -> int:
    return world.running.ledger.card_account(cardholder.account_id).pending


# --- what the merchant says against what the cardholder signed -----------------------


def test_check_digests_of_another_order_are_refused(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought, other = purchase(ec_merchant, cardholder, 400), purchase(ec_merchant, cardholder, 400)
    request, state = _said(ec_merchant, bought, oi_bytes=other.view.oi_bytes)
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_DIGEST_MISMATCH"
    request, state = _said(ec_merchant, bought, description=b"2 books")
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_DIGEST_MISMATCH"
    assert _pending(ec_world, cardholder) == 0


@pytest.mark.parametrize("field", ["lid_m", "lid_c", "preq_date_unix_ms", "language"])
def test_transaction_ids_other_than_the_signed_ones_are_refused(
    ec_world: World, ec_merchant: Merchant, field: str
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 400)
    ids = common_pb2.TransIDs()
    ids.CopyFrom(bought.order.trans_ids)
    changed = {"lid_m": b"another", "lid_c": b"another", "preq_date_unix_ms": 1, "language": "de"}
    setattr(ids, field, changed[field])
    request, state = _said(ec_merchant, bought, trans_ids=ids)
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_UNKNOWN_XID"
    assert _pending(ec_world, cardholder) == 0


def test_an_amount_in_another_currency_is_declined(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 400)
    request, state = _said(
        ec_merchant, bought, asked=common_pb2.CurrencyAmount(currency=USD, amount=400, exp10=2)
    )
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload) == ("AUTH_CODE_AMOUNT_ERROR", "RESP_REASON_AMOUNT_MISMATCH")
    assert payload.auth_header.auth_amt.amount == 0
    assert _pending(ec_world, cardholder) == 0
    # The PI was not spent by the decline: the amount signed is still authorized.
    request, state = auth_request(ec_merchant, bought)
    assert _names(_decision(ec_world, ec_merchant, request, state))[0] == "AUTH_CODE_APPROVED"


@pytest.mark.parametrize("amount", [0, -5])
def test_a_non_positive_amount_is_refused(
    ec_world: World, ec_merchant: Merchant, amount: int
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 400)
    request, state = _said(ec_merchant, bought, asked=eur(amount))
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_DECODING_FAILURE"
    assert _pending(ec_world, cardholder) == 0


def test_a_partial_amount_is_authorized_and_held_as_asked(
    ec_world: World, ec_merchant: Merchant
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 400)
    request, state = auth_request(ec_merchant, bought, 150)
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload)[0] == "AUTH_CODE_APPROVED"
    assert payload.auth_header.auth_amt == eur(150)
    assert _pending(ec_world, cardholder) == 150


# --- the card: its expiry on file --------------------------------------------------------


def test_card_data_with_an_expiry_not_on_file_is_declined(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # The blinded account in the certificate binds PAN and expiry; a certificate issued
    # (here directly with the Cardholder CA's key) for another expiry than the issuer's
    # for that card passes the account check and must still be declined by the issuer.
    known = register_cardholder(ec_world, expiry="203012")
    card = CardData(known.card.pan, "203011", known.card.card_secret, known.card.pan_secret)
    der = issue_cardholder(
        ec_world.running.pki.authority_keys().cardholder.issuing,
        known.credentials.signature_key.public_key,
        blinded_account(card.pan_secret, card.pan, card.expiry),
        card_expiry_end(card.expiry),
    )
    creds = Credentials(
        ec_world.keys, known.credentials.signature_key, der, known.credentials.chain
    )
    other = Cardholder(creds, card, known.trust, known.account_id)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, other, 100))
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload) == ("AUTH_CODE_EXPIRED_CARD", "RESP_REASON_EXPIRED_CARD")
    assert _pending(ec_world, known) == 0


# --- freshness ---------------------------------------------------------------------------


def test_a_request_dated_after_the_window_is_refused(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 100)
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)  # the merchant dates it ahead
    request, state = auth_request(ec_merchant, bought)
    monkeypatch.undo()
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_NEW"
    assert _pending(ec_world, cardholder) == 0


# --- sales ---------------------------------------------------------------------------------


def test_a_sale_is_authorized_and_captured_at_once(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(
        ec_merchant, purchase(ec_merchant, cardholder, 300), capture_now=True
    )
    first = ec_world.gateway.Authorize(request)
    payload = _decision(ec_world, ec_merchant, request, state)  # a retry: the same answer
    assert ec_world.gateway.Authorize(request).auth_res == first.auth_res
    assert _names(payload)[0] == "AUTH_CODE_APPROVED"
    assert payload.cap_res_payload.cap_amt == eur(300)
    assert payload.cap_res_payload.batch_id
    account = ec_world.running.ledger.card_account(cardholder.account_id)
    assert account.available == 100_000 - 300
    ec_world.running.ledger.check_balanced()


# --- failures in the middle of a request ----------------------------------------------


def test_a_key_backend_failing_before_the_decision_decides_nothing(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 250))

    def token_gone(*args: object) -> bytes:
        raise TransientBackendError("token removed")

    with monkeypatch.context() as patched:
        patched.setattr(gateway_authorize, "build_auth_response", token_gone)
        with pytest.raises(grpc.RpcError) as failed:
            ec_world.gateway.Authorize(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "key backend unavailable"  # type: ignore[attr-defined]
    assert _pending(ec_world, cardholder) == 0
    # The same bytes, once the token is back: decided now, and once.
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload)[0] == "AUTH_CODE_APPROVED"
    assert _decision(ec_world, ec_merchant, request, state) == payload
    assert _pending(ec_world, cardholder) == 250


def test_a_sale_whose_answer_failed_is_captured_once(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(
        ec_merchant, purchase(ec_merchant, cardholder, 320), capture_now=True
    )
    # Decided and unanswered: retry these bytes, never "refused" (UNAVAILABLE).
    send_unsigned_answers(
        ec_world, request, monkeypatch, lambda decision: decision.cap_res_payload is not None
    )
    assert ec_world.running.ledger.card_account(cardholder.account_id).available == 99_680
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload)[0] == "AUTH_CODE_APPROVED"
    assert payload.cap_res_payload.cap_amt == eur(320)
    assert ec_world.running.ledger.card_account(cardholder.account_id).available == 99_680
    ec_world.running.ledger.check_balanced()


def test_a_merchant_unknown_to_the_acquirers_books_spends_no_pi(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # Certified (here directly with the Merchant CA's key) but without an account in the
    # acquirer's books: the ledger refuses before it decides, and keeps nothing, so the
    # PI is still good once the account is opened.
    merchant_id = "M-ec-no-books"
    data = MerchantData(merchant_id, "No books", pan_allowed=False)
    mca = ec_world.running.pki.authority_keys().merchant.issuing
    sig, kex = ec_world.key(KeyUsage.SIGNATURE), ec_world.key(KeyUsage.KEY_EXCHANGE)
    sig_der = issue_merchant(mca, sig.public_key, CertificateUsage.SIGNATURE, data)
    kex_der = issue_merchant(
        mca, kex.public_key, CertificateUsage.KEY_EXCHANGE, data, kem=kem_for(kex)
    )
    creds = Credentials(ec_world.keys, sig, sig_der, ec_merchant.credentials.chain, kex, kex_der)
    merchant = Merchant(
        merchant_id, creds, ec_merchant.trust, ec_merchant.gateway_kex, ec_merchant.gateway_chain,
        ec_merchant.gateway_identity,
    )  # fmt: skip
    cardholder = register_cardholder(ec_world)
    bought = purchase(merchant, cardholder, 210)
    request, state = auth_request(merchant, bought)
    assert _refused(ec_world, merchant, request, state) == "ERROR_CODE_UNSPECIFIED_FAILURE"
    assert _pending(ec_world, cardholder) == 0
    ec_world.running.ledger.open_merchant_account(merchant_id, EUR)
    assert _names(_decision(ec_world, merchant, request, state))[0] == "AUTH_CODE_APPROVED"
    assert _pending(ec_world, cardholder) == 210


def test_an_error_the_key_backend_cannot_sign_is_unavailable_and_says_nothing_more(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request is refused, and the token goes away before the Error is signed: a
    # status, not gRPC's UNKNOWN carrying the backend's own message to the peer.
    from gateway import answers

    def token_gone(*args: object, **kwargs: object) -> None:
        raise TransientBackendError("token removed, slot 7 detail")

    from prometheus_client import CollectorRegistry

    from gateway import metrics

    monkeypatch.setattr(answers, "build_error", token_gone)
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        with pytest.raises(grpc.RpcError) as failed:
            ec_world.gateway.Authorize(a.AuthorizeRequest(auth_req=b"\xff" * 64))
        # Counted once, as what the merchant got: no refusal was answered.
        refused = {"method": "Authorize", "code": "ERROR_CODE_DECODING_FAILURE"}
        assert registry.get_sample_value("setpay_rpc_errors_total", refused) is None
    finally:
        metrics.disable()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "key backend unavailable"  # type: ignore[attr-defined]
