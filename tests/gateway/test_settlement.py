"""After authorization, through the real gateway: capture, reversals, credit, batches,
hold expiry, and every state surviving a restart of the bank."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pytest

from gateway.issuer import open_store
from gateway.ledger import Ledger, UnknownBatch
from gateway.ledger_keys import read_ledger_keys
from gateway.server import ServerLimits, ServiceBinding, create_server
from gateway.servicer import PaymentGatewayServicer
from setcore.auth_reversal import (
    build_auth_reversal_request,
    open_auth_reversal_response,
)
from setcore.authorization import AuthResult
from setcore.cap_rev_or_cred import (
    CapRevOrCredItem,
    build_capture_reversal_request,
    build_credit_request,
    build_credit_reversal_request,
    open_capture_reversal_response,
    open_credit_response,
    open_credit_reversal_response,
)
from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.errors import ErrorCode, PeerError
from setcore.gateway_admin import (
    TransactionPage,
    build_batch_admin_request,
    open_batch_admin_response,
)
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g
from setpay.v1 import services_pb2_grpc

from .actors import (
    Merchant,
    Purchase,
    World,
    authorize,
    channels_for,
    eur,
    open_world,
    purchase,
    register_cardholder,
    register_merchant,
)


@dataclass
class Authorized:
    """An approved authorization as the merchant keeps it."""

    bought: Purchase
    result: AuthResult
    account_id: str

    @property
    def token(self) -> bytes:
        return self.result.baggage.cap_token

    @property
    def rrpid(self) -> bytes:
        return self.result.data.auth_tags.auth_rr_tags.rrpid


def _authorized(world: World, merchant: Merchant, amount: int, limit: int = 100_000) -> Authorized:
    cardholder = register_cardholder(world, limit=limit)
    bought = purchase(merchant, cardholder, amount)
    result = authorize(world, merchant, bought)
    assert result.auth_code == a.AUTH_CODE_APPROVED
    return Authorized(bought, result, cardholder.account_id)


def capture(world: World, merchant: Merchant, auth: Authorized, amount: int, stub=None):  # type: ignore[no-untyped-def]
    item = CaptureItem(auth.bought.order.trans_ids, auth.rrpid, auth.token, eur(amount))
    request, state = build_capture_request(
        merchant.credentials, merchant.gateway_kex.recipient(), [item], merchant.merchant_id
    )
    response = (stub or world.gateway).Capture(request)
    result = open_capture_response(
        response, merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    payload = result.data.cap_res_items[0].cap_res_payload
    return a.CapCode.Name(payload.cap_code), payload.cap_amt.amount, state.rrpid, payload.batch_id


def _item(auth: Authorized, amount: int, original: bytes = b"") -> CapRevOrCredItem:
    return CapRevOrCredItem(
        auth.bought.order.trans_ids, auth.rrpid, auth.token, eur(amount), original_rrpid=original
    )


def credit(world: World, merchant: Merchant, auth: Authorized, amount: int) -> tuple[str, bytes]:
    request, state = build_credit_request(
        merchant.credentials, merchant.gateway_kex.recipient(), [_item(auth, amount)],
        merchant.merchant_id,
    )  # fmt: skip
    result = open_credit_response(
        world.gateway.Credit(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    return c.CapRevOrCredCode.Name(result.items[0].code), state.rrpid


def test_partial_captures_sum_at_most_the_authorization(world: World, merchant: Merchant) -> None:
    auth = _authorized(world, merchant, 1000)
    assert capture(world, merchant, auth, 400)[:2] == ("CAP_CODE_SUCCESS", 400)
    assert capture(world, merchant, auth, 500)[:2] == ("CAP_CODE_SUCCESS", 500)
    code, amount, _, _ = capture(world, merchant, auth, 101)
    assert (code, amount) == ("CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION", 0)
    account = world.running.ledger.card_account(auth.account_id)
    assert account.posted_debt == 900
    world.running.ledger.check_balanced()


def test_capture_above_authorization_is_refused(ec_world: World, ec_merchant: Merchant) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    assert capture(ec_world, ec_merchant, auth, 1001)[0] == "CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION"
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 0


def test_credit_at_most_captured_and_reversals(ec_world: World, ec_merchant: Merchant) -> None:
    ledger = ec_world.running.ledger
    auth = _authorized(ec_world, ec_merchant, 1000)
    _, _, capture_rrpid, _ = capture(ec_world, ec_merchant, auth, 600)
    assert (
        credit(ec_world, ec_merchant, auth, 601)[0]
        == "CAP_REV_OR_CRED_CODE_AMOUNT_EXCEEDS_ORIGINAL"
    )
    code, credit_rrpid = credit(ec_world, ec_merchant, auth, 200)
    assert code == "CAP_REV_OR_CRED_CODE_SUCCESS"
    assert ledger.card_account(auth.account_id).posted_debt == 400
    # Credit reversal: the refund is undone.
    request, state = build_credit_reversal_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(),
        [_item(auth, 200, credit_rrpid)], ec_merchant.merchant_id,
    )  # fmt: skip
    result = open_credit_reversal_response(
        ec_world.gateway.CreditReversal(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.items[0].code == c.CAP_REV_OR_CRED_CODE_SUCCESS
    assert ledger.card_account(auth.account_id).posted_debt == 600
    # A capture that was refunded cannot be reversed; a fresh one can.
    other = _authorized(ec_world, ec_merchant, 300)
    _, _, other_capture, _ = capture(ec_world, ec_merchant, other, 300)
    request, state = build_capture_reversal_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(),
        [_item(other, 300, other_capture)], ec_merchant.merchant_id,
    )  # fmt: skip
    result = open_capture_reversal_response(
        ec_world.gateway.CaptureReversal(request),
        ec_merchant.credentials,
        state,
        ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )
    assert result.items[0].code == c.CAP_REV_OR_CRED_CODE_SUCCESS
    assert ledger.card_account(other.account_id).posted_debt == 0
    assert capture_rrpid  # the first capture stays posted
    ledger.check_balanced()


def test_a_reversal_for_another_amount_moves_nothing(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # The merchant signs the amount to undo; the gateway must not undo the whole capture
    # (or credit) instead and answer success for more than was asked.
    ledger = ec_world.running.ledger
    auth = _authorized(ec_world, ec_merchant, 1000)
    capture(ec_world, ec_merchant, auth, 600)
    _, credit_rrpid = credit(ec_world, ec_merchant, auth, 200)
    gateway = ec_merchant.gateway_kex.recipient()
    request, state = build_credit_reversal_request(
        ec_merchant.credentials, gateway, [_item(auth, 50, credit_rrpid)], ec_merchant.merchant_id
    )
    result = open_credit_reversal_response(
        ec_world.gateway.CreditReversal(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert (result.items[0].code, result.items[0].actual_amt.amount) == (
        c.CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH,
        0,
    )
    assert ledger.card_account(auth.account_id).posted_debt == 400
    other = _authorized(ec_world, ec_merchant, 1000)
    _, _, other_capture, _ = capture(ec_world, ec_merchant, other, 600)
    request, state = build_capture_reversal_request(
        ec_merchant.credentials, gateway, [_item(other, 100, other_capture)],
        ec_merchant.merchant_id,
    )  # fmt: skip
    result = open_capture_reversal_response(
        ec_world.gateway.CaptureReversal(request),
        ec_merchant.credentials,
        state,
        ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )
    assert (result.items[0].code, result.items[0].actual_amt.amount) == (
        c.CAP_REV_OR_CRED_CODE_CAP_DATA_MISMATCH,
        0,
    )
    assert ledger.card_account(other.account_id).posted_debt == 600
    ledger.check_balanced()


def test_authorization_reversal_releases_the_hold(world: World, merchant: Merchant) -> None:
    ledger = world.running.ledger
    auth = _authorized(world, merchant, 1000)

    def reverse(new_amount: int, token: bytes) -> tuple[int, bytes]:
        request, state = build_auth_reversal_request(
            merchant.credentials, merchant.gateway_kex.recipient(), auth.bought.order.trans_ids,
            auth.rrpid, token, eur(new_amount), merchant.merchant_id,
        )  # fmt: skip
        result = open_auth_reversal_response(
            world.gateway.AuthReversal(request), merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
        return result.auth_rev_code, result.baggage.cap_token_new

    code, new_token = reverse(400, auth.token)
    assert code == a.AUTH_REV_CODE_APPROVED and new_token
    assert ledger.card_account(auth.account_id).pending == 400
    auth = replace(auth, result=auth.result)  # the merchant now holds the new token
    code, last = reverse(0, new_token)
    assert code == a.AUTH_REV_CODE_APPROVED and not last
    assert ledger.card_account(auth.account_id).pending == 0


def _gateway_with_clock(
    world: World, offset_ms: int
) -> tuple[services_pb2_grpc.PaymentGatewayServiceStub, object]:
    """A second PaymentGateway server on the same bank whose ledger clock runs ahead."""
    config = world.config
    ledger = Ledger(
        open_store(config), read_ledger_keys(config, world.running.pki.backend),
        clock=lambda: int(time.time() * 1000) + offset_ms,
    )  # fmt: skip
    bank = replace(world.running.bank, ledger=ledger)
    from gateway.process import tls_config

    server, port, health = create_server(
        [ServiceBinding("PaymentGatewayService", PaymentGatewayServicer(bank))],
        "127.0.0.1:0",
        ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=16, threads=4),
        tls=tls_config(config, mutual=True),
    )
    channel, ca = channels_for(world.directory, port, world.running.ca_port)
    ca.close()

    def close() -> None:
        channel.close()
        health.stop()
        server.stop(None).wait()
        ledger.close()

    return services_pb2_grpc.PaymentGatewayServiceStub(channel), close  # type: ignore[no-untyped-call]


def test_hold_expiry_releases_the_hold(ec_world: World, ec_merchant: Merchant) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    eight_days = 8 * 24 * 3600 * 1000  # holds last 7 days
    stub, close = _gateway_with_clock(ec_world, eight_days)
    try:
        code, amount, _, _ = capture(ec_world, ec_merchant, auth, 500, stub=stub)
        assert (code, amount) == ("CAP_CODE_AUTH_EXPIRED", 0)
    finally:
        close()  # type: ignore[operator]
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 0


def test_expired_card_is_declined(ec_world: World, ec_merchant: Merchant) -> None:
    cardholder = register_cardholder(ec_world, expiry="202612")
    bought = purchase(ec_merchant, cardholder, 100)
    years = 3 * 365 * 24 * 3600 * 1000
    stub, close = _gateway_with_clock(ec_world, years)
    try:
        from setcore.authorization import open_auth_response

        from .actors import auth_request

        request, state = auth_request(ec_merchant, bought)
        result = open_auth_response(
            stub.Authorize(request), ec_merchant.credentials, state, ec_merchant.trust,
            gateway_identity=ec_merchant.gateway_identity,
        )  # fmt: skip
        header = result.data.auth_res_payload.auth_header
        assert a.AuthCode.Name(header.auth_code) == "AUTH_CODE_EXPIRED_CARD"
        assert a.RespReason.Name(header.response_data.resp_reason) == "RESP_REASON_EXPIRED_CARD"
    finally:
        close()  # type: ignore[operator]


def test_batch_close_and_summary(ec_world: World) -> None:
    merchant = register_merchant(ec_world, "M-ec-batch")
    auth = _authorized(ec_world, merchant, 1000)
    batch_id = capture(ec_world, merchant, auth, 700)[3]

    def admin(op: int, **kw: object):  # type: ignore[no-untyped-def]
        request, state = build_batch_admin_request(
            merchant.credentials,
            merchant.gateway_kex.recipient(),
            merchant.merchant_id,
            op,
            **kw,  # type: ignore[arg-type]
        )
        return open_batch_admin_response(
            ec_world.gateway.BatchAdmin(request), merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip

    summary = admin(g.BATCH_OPERATION_REQUEST, batch_id=batch_id, return_summary=True)
    assert summary.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
    assert summary.data.batch_status.capture_count == 1
    assert summary.data.batch_status.captured_total.amount == 700
    # A second capture: the batch's totals and its detail, asked in one request, agree.
    second = capture(ec_world, merchant, _authorized(ec_world, merchant, 500), 300)
    assert second[3] == batch_id
    listed = admin(g.BATCH_OPERATION_REQUEST, batch_id=batch_id, page=TransactionPage(0, 1))
    assert listed.data.batch_status.capture_count == 2
    assert [d.batch_sequence_num for d in listed.data.transaction_details] == [1]
    assert listed.data.next_starting_point == 1
    rest = admin(g.BATCH_OPERATION_REQUEST, batch_id=batch_id, page=TransactionPage(1, 5))
    assert [d.amount.amount for d in rest.data.transaction_details] == [300]
    assert rest.data.next_starting_point == 0
    closed = admin(
        g.BATCH_OPERATION_CLOSE, batch_id=summary.data.batch_id, page=TransactionPage(0, 5)
    )
    assert closed.data.status == g.BATCH_ADMIN_STATUS_SUCCESS and closed.data.batch_status.closed
    assert [d.amount.amount for d in closed.data.transaction_details] == [700, 300]
    opened = admin(g.BATCH_OPERATION_OPEN, page=TransactionPage(0, 5))
    assert opened.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
    assert opened.data.batch_id != batch_id and not opened.data.transaction_details
    unknown = admin(g.BATCH_OPERATION_REQUEST, batch_id="batch-nope", page=TransactionPage(0, 5))
    assert unknown.data.status == g.BATCH_ADMIN_STATUS_BATCH_UNKNOWN


def test_opening_a_batch_under_an_id_of_the_merchants_opens_nothing(ec_world: World) -> None:
    # The gateway used to open a batch of its own naming and answer with that id, which
    # the merchant refused as about another batch: a batch open that it did not know.
    merchant = register_merchant(ec_world, "M-ec-named")
    request, state = build_batch_admin_request(
        merchant.credentials, merchant.gateway_kex.recipient(), merchant.merchant_id,
        g.BATCH_OPERATION_OPEN, batch_id="mine-1",
    )  # fmt: skip
    with pytest.raises(PeerError) as raised:
        open_batch_admin_response(
            ec_world.gateway.BatchAdmin(request), merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    assert raised.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    with pytest.raises(UnknownBatch):
        ec_world.running.ledger.batch_summary(merchant.merchant_id)


def test_closing_with_a_page_past_any_sequence_number_closes_nothing(ec_world: World) -> None:
    # The ledger used to close the batch and then fail to read the page for the answer
    # (SQLite cannot bind the number): a decision committed whose answer never could be.
    merchant = register_merchant(ec_world, "M-ec-far-page")
    batch_id = capture(ec_world, merchant, _authorized(ec_world, merchant, 100), 100)[3]
    request, state = build_batch_admin_request(
        merchant.credentials, merchant.gateway_kex.recipient(), merchant.merchant_id,
        g.BATCH_OPERATION_CLOSE, batch_id=batch_id, page=TransactionPage(2**63, 5),
    )  # fmt: skip
    with pytest.raises(PeerError) as raised:
        open_batch_admin_response(
            ec_world.gateway.BatchAdmin(request), merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    assert raised.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert ec_world.running.ledger.batch_summary(merchant.merchant_id, batch_id).status == "open"


def test_restart_keeps_every_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = open_world(tmp_path / "bank", "ec")
    try:
        merchant = register_merchant(world, "M-restart")
        auth = _authorized(world, merchant, 1000)
        _, _, first_capture, _ = capture(world, merchant, auth, 300)
        account_id = auth.account_id
    finally:
        world.close()
    again = open_world(tmp_path / "bank", "ec", create=False)
    try:
        account = again.running.ledger.card_account(account_id)
        assert (account.pending, account.posted_debt) == (700, 300)
        # The merchant's certificates, the capture token and the hold still work.
        assert capture(again, merchant, auth, 700)[:2] == ("CAP_CODE_SUCCESS", 700)
        assert capture(again, merchant, auth, 1)[0] == "CAP_CODE_AMOUNT_EXCEEDS_AUTHORIZATION"
        assert first_capture
        again.running.ledger.check_balanced()
    finally:
        again.close()
