"""Authorize through the real gateway: happy path, each decline, each protocol failure."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from setcore import purchase as purchase_module
from setcore.authorization import (
    AUTHORIZE_REQUEST_CT,
    AuthRequestState,
    build_auth_request,
    open_auth_response,
)
from setcore.errors import PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS
from setcore.pki.issuance import card_expiry_end, issue_cardholder
from setcore.purchase import CardData
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import crypto_pb2, purchase_pb2
from tests.clocks import clocks_moved

from .actors import (
    Cardholder,
    Merchant,
    World,
    as_sent,
    auth_request,
    authorize,
    decline_left_unanswered,
    purchase,
    register_cardholder,
    register_merchant,
    send_failing_declines,
)


def _decision(result: object) -> tuple[str, str, int]:
    header = result.data.auth_res_payload.auth_header  # type: ignore[attr-defined]
    return (
        a.AuthCode.Name(header.auth_code),
        a.RespReason.Name(header.response_data.resp_reason),
        header.auth_amt.amount,
    )


def _refused(
    world: World, merchant: Merchant, request: a.AuthorizeRequest, state: AuthRequestState
) -> str:
    """Send an AuthReq that must be refused; the peer's signed Error code name."""
    response = world.gateway.Authorize(request)
    assert response.WhichOneof("result") == "error"
    assert response.error.WhichOneof("error") == "signed_error"
    with pytest.raises(PeerError) as exc:
        open_auth_response(
            response, merchant.credentials, as_sent(state, request), merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    return exc.value.code_name


def test_end_to_end_authorization(world: World, merchant: Merchant) -> None:
    steps: list[tuple[str, float]] = []
    t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps.append((name, (now - t) * 1000))
        t = now

    cardholder = register_cardholder(world)
    step("cardholder registration (CardCInit, RegForm, Cert)")
    bought = purchase(merchant, cardholder, 1999)
    step("PInit + PReq built by the wallet, verified by the merchant")
    request, state = auth_request(merchant, bought)
    step("AuthReq built by the merchant (PI forwarded as baggage)")
    response = world.gateway.Authorize(request)
    step("Authorize RPC (gateway: open, verify, ledger, sign)")
    result = open_auth_response(
        response, merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    step("AuthRes verified by the merchant")
    assert _decision(result) == ("AUTH_CODE_APPROVED", "RESP_REASON_UNSPECIFIED", 1999)
    assert result.baggage.cap_token
    assert result.data.merchant_cert_thumb == merchant.credentials.signature_thumb
    account = world.running.ledger.card_account(cardholder.account_id)
    assert account.pending == 1999 and account.available == 100_000 - 1999
    print(f"\n[{world.profile}] end-to-end authorization:")
    for name, ms in steps:
        print(f"  {ms:8.1f} ms  {name}")


def test_insufficient_funds(world: World, merchant: Merchant) -> None:
    cardholder = register_cardholder(world, limit=1000)
    result = authorize(world, merchant, purchase(merchant, cardholder, 1001))
    assert _decision(result) == ("AUTH_CODE_DECLINED", "RESP_REASON_INSUFFICIENT_FUNDS", 0)
    assert not result.baggage.cap_token


def test_blocked_and_closed_accounts(ec_world: World, ec_merchant: Merchant) -> None:
    blocked = register_cardholder(ec_world)
    ec_world.running.ledger.block_card_account(blocked.account_id)
    result = authorize(ec_world, ec_merchant, purchase(ec_merchant, blocked, 100))
    assert _decision(result)[:2] == ("AUTH_CODE_DECLINED", "RESP_REASON_BLOCKED_ACCOUNT")
    closed = register_cardholder(ec_world)
    ec_world.running.ledger.close_card_account(closed.account_id)
    result = authorize(ec_world, ec_merchant, purchase(ec_merchant, closed, 100))
    assert _decision(result)[:2] == ("AUTH_CODE_DECLINED", "RESP_REASON_CLOSED_ACCOUNT")


def test_unknown_account(ec_world: World, ec_merchant: Merchant) -> None:
    # A certificate for a card the issuer has no account for: the Cardholder CA never
    # issues one (it asks the issuer), so the test issues it with the CA's key directly.
    pki = ec_world.running.pki
    known = register_cardholder(ec_world)
    pan = ec_world.new_pan()
    from setcore.pan import PAN, blinded_account

    card = CardData(PAN(pan), known.card.expiry, known.card.card_secret, known.card.pan_secret)
    der = issue_cardholder(
        pki.authority_keys().cardholder.issuing,
        known.credentials.signature_key.public_key,
        blinded_account(card.pan_secret, card.pan, card.expiry),
        card_expiry_end(card.expiry),
    )
    from setcore.credentials import Credentials

    creds = Credentials(
        ec_world.keys, known.credentials.signature_key, der, known.credentials.chain
    )
    stranger = Cardholder(creds, card, known.trust, "none")
    result = authorize(ec_world, ec_merchant, purchase(ec_merchant, stranger, 100))
    assert _decision(result)[:2] == ("AUTH_CODE_DECLINED", "RESP_REASON_UNKNOWN_ACCOUNT")


def test_amount_mismatch(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 500)
    result = authorize(ec_world, ec_merchant, bought, amount=501)
    assert _decision(result)[:2] == ("AUTH_CODE_AMOUNT_ERROR", "RESP_REASON_AMOUNT_MISMATCH")
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_an_amount_in_another_exponent_than_its_currencys_is_refused(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ledger counts euro cents. A purchase the cardholder and the merchant both
    # signed as 500 at exponent 0 (500.00 euro) was approved and held as 500 cents; it
    # is refused now, even when the clients skipped their own check (the patch below),
    # and nothing is held.
    monkeypatch.setattr(purchase_module, "check_amount", lambda *_, **__: None)
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 500, exp10=0)
    monkeypatch.undo()
    request, state = build_auth_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), bought.view.pi_bytes,
        bought.order.trans_ids, bought.view.oi_bytes, bought.order.description,
        bought.order.amount, bought.view.oi_data.od_salt, bought.order.amount,
        ec_merchant.merchant_id,
    )  # fmt: skip
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_DECODING_FAILURE"
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_duplicate_rrpid_same_bytes_same_answer_one_hold(
    ec_world: World, ec_merchant: Merchant
) -> None:
    cardholder = register_cardholder(ec_world)
    request, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 700))
    first = ec_world.gateway.Authorize(request)
    second = ec_world.gateway.Authorize(request)
    assert first.auth_res and first.auth_res == second.auth_res
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 700


def test_same_rrpid_other_bytes_is_refused(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 700)
    request, _ = auth_request(ec_merchant, bought)
    assert ec_world.gateway.Authorize(request).auth_res
    rrpid = request.header.rrpid
    again, state = auth_request(ec_merchant, bought, 600, rrpid=rrpid)
    assert _refused(ec_world, ec_merchant, again, state) == "ERROR_CODE_RRPID_REUSED"


def test_pi_replayed_in_a_new_authreq_is_refused(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 300)
    assert _decision(authorize(ec_world, ec_merchant, bought))[0] == "AUTH_CODE_APPROVED"
    request, state = auth_request(ec_merchant, bought)  # same PI, fresh RRPID
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_PI_PREVIOUSLY_USED"
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 300


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ("ciphertext", "ERROR_CODE_DECRYPTION_FAILURE"),
        ("extra_ciphertext", "ERROR_CODE_DECRYPTION_FAILURE"),
        ("kem_ciphertext", "ERROR_CODE_DECRYPTION_FAILURE"),
        ("pi_tbs", "ERROR_CODE_DIGEST_MISMATCH"),
        ("signature", "ERROR_CODE_SIGNATURE_FAILURE"),
    ],
)
def test_tampered_pi_is_refused(
    ec_world: World, ec_merchant: Merchant, part: str, expected: str
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 300)
    pi = purchase_pb2.PIDualSigned.FromString(bought.view.pi_bytes)
    target, field = {
        "ciphertext": (pi.ex_pi, "ciphertext"),
        "extra_ciphertext": (pi.ex_pi, "extra_ciphertext"),
        "kem_ciphertext": (pi.ex_pi, "kem_ciphertext"),
        "pi_tbs": (pi, "pi_tbs"),
        "signature": (pi.pi_signature.signature, "value"),
    }[part]
    value = bytearray(getattr(target, field))
    value[-3] ^= 0x01
    setattr(target, field, bytes(value))
    # The merchant links its signed request to the tampered PI, so the baggage link holds;
    # the PI itself no longer opens or verifies at the gateway.
    request, state = auth_request(ec_merchant, bought, pi_bytes=pi.SerializeToString())
    assert _refused(ec_world, ec_merchant, request, state) == expected
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_baggage_swapped_after_signing_is_refused(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    one, two = purchase(ec_merchant, cardholder, 100), purchase(ec_merchant, cardholder, 200)
    request, state = auth_request(ec_merchant, one)
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.auth_req)
    envelope.baggage = two.view.pi_bytes
    request.auth_req = envelope.SerializeToString()
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_DIGEST_MISMATCH"


def test_pi_presented_by_another_merchant_is_refused(
    ec_world: World, ec_merchant: Merchant
) -> None:
    other = register_merchant(ec_world, "M-ec-other")
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 100)  # the PI names ec_merchant
    request, state = auth_request(other, bought)
    assert _refused(ec_world, other, request, state) == "ERROR_CODE_MERCHANT_MISMATCH"


def test_revoked_cardholder_is_refused(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 100)
    cert = cardholder.credentials.signature_cert
    from setcore.encoding import thumbprint

    ec_world.running.authority.revoke(thumb=thumbprint(cert))
    request, state = auth_request(ec_merchant, bought)
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_REVOKED_CERTIFICATE"


def test_unparseable_frame_is_invalid_argument(ec_world: World) -> None:
    call = ec_world.channels[0].unary_unary(
        "/setpay.v1.PaymentGatewayService/Authorize",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as exc:
        call(b"\xff\xff\xff\xff\x0f")
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("inner", "code"),
    [
        # A varint that never ends: no protobuf parser reads this. (Random bytes would
        # not do: about one 64-byte string in a thousand parses, as unknown fields.)
        (b"\xff" * 64, "ERROR_CODE_DECODING_FAILURE"),
        # Field 15, a varint: well-formed, but no field of the envelope.
        (b"\x78\x01", "ERROR_CODE_UNRECOGNIZED_EXTENSION"),
    ],
)
def test_garbage_inside_the_frame_is_a_signed_error(
    ec_world: World, ec_merchant: Merchant, inner: bytes, code: str
) -> None:
    request = a.AuthorizeRequest(auth_req=inner)
    response = ec_world.gateway.Authorize(request)
    assert response.WhichOneof("result") == "error"
    from setcore.error_message import open_gateway_error, request_digest

    # No header, so no RRPID to name: the Error names none either; it names the bytes.
    gateway = ec_merchant.gateway_identity
    sent = request_digest(AUTHORIZE_REQUEST_CT, inner)
    error = open_gateway_error(response.error, ec_merchant.trust, gateway, rrpid=b"", request=sent)
    assert error.code_name == code


def test_concurrent_authorizations_race_for_one_limit(
    ec_world: World, ec_merchant: Merchant
) -> None:
    affordable, amount, racers = 50, 100, 200
    cardholder = register_cardholder(ec_world, limit=affordable * amount)
    requests = [
        auth_request(ec_merchant, purchase(ec_merchant, cardholder, amount)) for _ in range(racers)
    ]

    def send(pair: tuple[a.AuthorizeRequest, object]) -> str:
        request, state = pair
        result = open_auth_response(
            ec_world.gateway.Authorize(request),
            ec_merchant.credentials,
            state,  # type: ignore[arg-type]
            ec_merchant.trust,
            gateway_identity=ec_merchant.gateway_identity,
        )
        return _decision(result)[0]

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(send, requests))
    assert codes.count("AUTH_CODE_APPROVED") == affordable
    assert codes.count("AUTH_CODE_DECLINED") == racers - affordable
    account = ec_world.running.ledger.card_account(cardholder.account_id)
    assert account.pending == affordable * amount and account.available == 0
    ec_world.running.ledger.check_balanced()


def _after_the_freshness_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)


def test_retry_after_the_freshness_window_gets_the_stored_answer(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    request, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 250))
    first = ec_world.gateway.Authorize(request)
    assert first.auth_res
    # Built now, sent "later": never answered before, so it is refused as too old.
    other, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 250))
    _after_the_freshness_window(monkeypatch)
    again = ec_world.gateway.Authorize(request)
    assert again.auth_res == first.auth_res
    assert _refused(ec_world, ec_merchant, other, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 250


def test_a_decision_whose_answer_failed_is_answered_by_the_retry(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retried after the freshness window: the request is checked as of its decision and
    # gets the decline the ledger decided, which is then stored for every later retry.
    request, state, cardholder = decline_left_unanswered(ec_world, ec_merchant, monkeypatch)
    _after_the_freshness_window(monkeypatch)
    again = ec_world.gateway.Authorize(request)
    result = open_auth_response(
        again, ec_merchant.credentials, state, ec_merchant.trust,  # type: ignore[arg-type]
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert _decision(result) == ("AUTH_CODE_DECLINED", "RESP_REASON_INSUFFICIENT_FUNDS", 0)
    assert ec_world.gateway.Authorize(request).auth_res == again.auth_res
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0
    ec_world.running.ledger.check_balanced()


def test_an_answer_built_later_is_checked_as_of_the_first_check_not_the_decision(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway checks a request's date, then the ledger decides it a few milliseconds
    # later (seconds here). A date at the window's edge is fresh as of the check and too
    # old as of the decision: checked as of the decision, the answer could never be built.
    cardholder = register_cardholder(ec_world, limit=1000)
    clocks_moved(monkeypatch, -FRESHNESS_WINDOW_MS)  # the merchant dates it a window ago
    request, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 5000))
    clocks_moved(monkeypatch, -5_000)  # the gateway checks it as of 5 s ago: just fresh
    send_failing_declines(ec_world, request, monkeypatch)
    clocks_moved(monkeypatch, 0)  # the retry, on the wall clock: aged out
    again = ec_world.gateway.Authorize(request)
    result = open_auth_response(
        again, ec_merchant.credentials, state, ec_merchant.trust,  # type: ignore[arg-type]
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert _decision(result) == ("AUTH_CODE_DECLINED", "RESP_REASON_INSUFFICIENT_FUNDS", 0)
    assert ec_world.gateway.Authorize(request).auth_res == again.auth_res
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_a_revocation_since_the_decision_does_not_stop_its_answer(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every revocation publishes a brand CRL identifier newer than the decision (and one
    # is published every day in any case); as of the decision it still tells the
    # merchant's certificates good, so the retry gets the decline the ledger decided.
    from setcore.encoding import thumbprint

    bystander = register_cardholder(ec_world)
    request, state, cardholder = decline_left_unanswered(ec_world, ec_merchant, monkeypatch)
    ec_world.running.authority.revoke(thumb=thumbprint(bystander.credentials.signature_cert))
    _after_the_freshness_window(monkeypatch)
    again = ec_world.gateway.Authorize(request)
    result = open_auth_response(
        again, ec_merchant.credentials, state, ec_merchant.trust,  # type: ignore[arg-type]
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert _decision(result) == ("AUTH_CODE_DECLINED", "RESP_REASON_INSUFFICIENT_FUNDS", 0)
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_a_decision_that_cannot_be_answered_now_is_never_refused_as_too_old(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refusal as too old would tell the merchant the gateway holds nothing for these
    # bytes, and the request built afresh would be decided a second time.
    from setcore.encoding import thumbprint

    merchant = register_merchant(ec_world, "m-revoked-after")
    request, _, cardholder = decline_left_unanswered(ec_world, merchant, monkeypatch)
    # Revocation is current state: the merchant's own signature certificate, revoked
    # since, fails even as of the decision.
    ec_world.running.authority.revoke(thumb=thumbprint(merchant.credentials.signature_cert))
    _after_the_freshness_window(monkeypatch)
    with pytest.raises(grpc.RpcError) as exc:
        ec_world.gateway.Authorize(request)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable: the merchant waits
    assert exc.value.details() == "answer unavailable"
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0


def test_a_request_never_decided_is_still_refused_as_too_old(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never decided: an aged request is refused, whatever the ledger holds for others.
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 250))
    _after_the_freshness_window(monkeypatch)
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert ec_world.running.ledger.card_account(cardholder.account_id).pending == 0
