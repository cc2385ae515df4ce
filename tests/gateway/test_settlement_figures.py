"""The figures the gateway answers with after authorization, through the real gateway:
a batch's totals net of what was undone, and what a refused authorization reversal says
still stands."""

from __future__ import annotations

from setcore.auth_reversal import build_auth_reversal_request, open_auth_reversal_response
from setcore.cap_rev_or_cred import (
    build_capture_reversal_request,
    build_credit_reversal_request,
    open_capture_reversal_response,
    open_credit_reversal_response,
)
from setcore.gateway_admin import (
    BatchAdminResult,
    TransactionPage,
    build_batch_admin_request,
    open_batch_admin_response,
)
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g
from setpay.v1 import services_pb2_grpc

from .actors import Merchant, World, eur, register_merchant
from .test_settlement import Authorized, _authorized, _gateway_with_clock, _item, capture, credit


def _batch(world: World, merchant: Merchant, op: int, **kw: object) -> BatchAdminResult:
    request, state = build_batch_admin_request(
        merchant.credentials, merchant.gateway_kex.recipient(), merchant.merchant_id, op,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return open_batch_admin_response(
        world.gateway.BatchAdmin(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip


def _reverse(
    world: World, merchant: Merchant, auth: Authorized, amount: int, of: bytes, *, credit: bool
) -> c.CapRevOrCredResItem:
    """Reverse ``amount`` of the capture (or, ``credit``, the refund) ``of``."""
    build, send, open_response = (
        (build_credit_reversal_request, world.gateway.CreditReversal, open_credit_reversal_response)
        if credit
        else (build_capture_reversal_request, world.gateway.CaptureReversal,
              open_capture_reversal_response)
    )  # fmt: skip
    request, state = build(
        merchant.credentials, merchant.gateway_kex.recipient(), [_item(auth, amount, of)],
        merchant.merchant_id,
    )  # fmt: skip
    return open_response(
        send(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    ).items[0]  # fmt: skip


def test_batch_totals_show_reversals_and_the_net(ec_world: World) -> None:
    # Two captures, one of them reversed, two refunds, one of them reversed: the batch
    # owes the merchant 1500 - 1000 - (250 - 200) = 450, not the gross 1500 captured.
    merchant = register_merchant(ec_world, "M-ec-net")
    first, second = _authorized(ec_world, merchant, 1000), _authorized(ec_world, merchant, 500)
    _, _, first_capture, batch_id = capture(ec_world, merchant, first, 1000)
    assert capture(ec_world, merchant, second, 500)[3] == batch_id
    undone = _reverse(ec_world, merchant, first, 1000, first_capture, credit=False)
    assert (undone.code, undone.batch_id) == (c.CAP_REV_OR_CRED_CODE_SUCCESS, batch_id)
    code, refund = credit(ec_world, merchant, second, 200)
    assert code == "CAP_REV_OR_CRED_CODE_SUCCESS"
    assert credit(ec_world, merchant, second, 50)[0] == "CAP_REV_OR_CRED_CODE_SUCCESS"
    assert _reverse(ec_world, merchant, second, 200, refund, credit=True).code == (
        c.CAP_REV_OR_CRED_CODE_SUCCESS
    )

    page = TransactionPage(0, 10)
    status = _batch(
        ec_world, merchant, g.BATCH_OPERATION_REQUEST, batch_id=batch_id, page=page
    ).data
    totals = status.batch_status
    assert (totals.captured_total.amount, totals.capture_count) == (1500, 2)
    assert (totals.credited_total.amount, totals.credit_count) == (250, 2)
    assert (totals.capture_reversed_total.amount, totals.capture_reversal_count) == (1000, 1)
    assert (totals.credit_reversed_total.amount, totals.credit_reversal_count) == (200, 1)
    assert totals.net_total.amount == 450
    for figure in (totals.captured_total, totals.capture_reversed_total, totals.net_total):
        assert (figure.currency, figure.exp10) == (978, 2)
    assert [(d.kind, d.amount.amount) for d in status.transaction_details] == [
        ("capture", 1000),
        ("capture", 500),
        ("capture-reversal", 1000),
        ("credit", 200),
        ("credit", 50),
        ("credit-reversal", 200),
    ]
    # The books agree: the merchant holds what the batch settles.
    ledger = ec_world.running.ledger
    assert ledger.merchant_account(merchant.merchant_id).balance == 450
    assert ledger.batch_summary(merchant.merchant_id, batch_id).net == 450
    closed = _batch(ec_world, merchant, g.BATCH_OPERATION_CLOSE, batch_id=batch_id).data
    assert (closed.batch_status.net_total.amount, closed.batch_status.closed) == (450, True)
    ledger.check_balanced()


def test_a_reversal_filed_in_a_later_batch_takes_back_there(ec_world: World) -> None:
    # The capture's batch is closed, so its reversal goes into the next one: that batch
    # takes 300 back from the merchant, and says so, rather than show nothing.
    merchant = register_merchant(ec_world, "M-ec-later")
    auth = _authorized(ec_world, merchant, 300)
    _, _, capture_rrpid, first_batch = capture(ec_world, merchant, auth, 300)
    closed = _batch(ec_world, merchant, g.BATCH_OPERATION_CLOSE, batch_id=first_batch).data
    assert closed.status == g.BATCH_ADMIN_STATUS_SUCCESS
    undone = _reverse(ec_world, merchant, auth, 300, capture_rrpid, credit=False)
    assert undone.code == c.CAP_REV_OR_CRED_CODE_SUCCESS and undone.batch_id != first_batch
    later = _batch(ec_world, merchant, g.BATCH_OPERATION_REQUEST, batch_id=undone.batch_id).data
    totals = later.batch_status
    assert (totals.captured_total.amount, totals.capture_count) == (0, 0)
    assert (totals.capture_reversed_total.amount, totals.capture_reversal_count) == (300, 1)
    assert totals.net_total.amount == -300
    earlier = _batch(ec_world, merchant, g.BATCH_OPERATION_REQUEST, batch_id=first_batch).data
    assert (earlier.batch_status.captured_total.amount, earlier.batch_status.net_total.amount) == (
        300,
        300,
    )


def _reverse_authorization(
    stub: services_pb2_grpc.PaymentGatewayServiceStub,
    merchant: Merchant,
    auth: Authorized,
    new_amount: int,
    token: bytes,
) -> tuple[int, int, bytes]:
    request, state = build_auth_reversal_request(
        merchant.credentials, merchant.gateway_kex.recipient(), auth.bought.order.trans_ids,
        auth.rrpid, token, eur(new_amount), merchant.merchant_id,
    )  # fmt: skip
    result = open_auth_reversal_response(
        stub.AuthReversal(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    return result.auth_rev_code, result.data.auth_new_amt.amount, result.baggage.cap_token_new


def test_a_refused_reversal_says_what_stays_authorized(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    gateway = ec_world.gateway
    code, kept, token = _reverse_authorization(gateway, ec_merchant, auth, 400, auth.token)
    assert (code, kept) == (a.AUTH_REV_CODE_APPROVED, 400) and token
    # The merchant's first token still says 1000; the authorization stands at 400.
    code, kept, none = _reverse_authorization(gateway, ec_merchant, auth, 600, auth.token)
    assert (code, kept, none) == (a.AUTH_REV_CODE_INVALID_AMOUNT, 400, b"")
    # Below what is captured: refused, and it still stands at 400.
    capture(ec_world, ec_merchant, auth, 300)
    code, kept, _ = _reverse_authorization(gateway, ec_merchant, auth, 100, token)
    assert (code, kept) == (a.AUTH_REV_CODE_INVALID_AMOUNT, 400)
    # Nothing moved: 300 captured, 100 still held.
    account = ec_world.running.ledger.card_account(auth.account_id)
    assert (account.posted_debt, account.pending) == (300, 100)


def test_a_refused_reversal_of_an_expired_hold_says_only_the_capture_stands(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    capture(ec_world, ec_merchant, auth, 300)
    eight_days = 8 * 24 * 3600 * 1000  # holds last 7 days
    stub, close = _gateway_with_clock(ec_world, eight_days)
    try:
        code, kept, token = _reverse_authorization(stub, ec_merchant, auth, 0, auth.token)
    finally:
        close()  # type: ignore[operator]
    assert (code, kept, token) == (a.AUTH_REV_CODE_INVALID_TRANSACTION, 300, b"")
