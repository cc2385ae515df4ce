"""Refusals after authorization that SET names no code for, through the real gateway:
each is answered with a code of its own, never UNSPECIFIED_FAILURE, which tells the
merchant nothing of what to do next."""

from __future__ import annotations

from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g

from .actors import Merchant, World, authorize, purchase, register_cardholder, register_merchant
from .test_settlement import Authorized, _authorized, capture, credit
from .test_settlement_figures import _batch, _reverse

# The card's limit, and each sale on it: one sale takes the whole of it.
LIMIT = 5000


def test_a_credit_reversal_the_card_has_no_room_for_is_answered_insufficient_funds(
    ec_world: World, ec_merchant: Merchant
) -> None:
    cardholder = register_cardholder(ec_world, limit=LIMIT)

    def approved() -> Authorized:
        bought = purchase(ec_merchant, cardholder, LIMIT)
        result = authorize(ec_world, ec_merchant, bought)
        assert result.auth_code == a.AUTH_CODE_APPROVED
        return Authorized(bought, result, cardholder.account_id)

    first = approved()
    assert capture(ec_world, ec_merchant, first, LIMIT)[0] == "CAP_CODE_SUCCESS"
    code, refund = credit(ec_world, ec_merchant, first, LIMIT)
    assert code == "CAP_REV_OR_CRED_CODE_SUCCESS"
    approved()  # the refund's room is held again by a second purchase

    undone = _reverse(ec_world, ec_merchant, first, LIMIT, refund, credit=True)

    assert undone.code == c.CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS
    assert undone.actual_amt.amount == 0
    account = ec_world.running.ledger.card_account(cardholder.account_id)
    assert (account.posted_debt, account.pending) == (0, LIMIT)
    ec_world.running.ledger.check_balanced()


def test_a_purge_of_an_open_batch_is_answered_batch_not_closed(ec_world: World) -> None:
    merchant = register_merchant(ec_world, "M-ec-purge-open")
    auth = _authorized(ec_world, merchant, 100)
    batch_id = capture(ec_world, merchant, auth, 100)[3]

    refused = _batch(ec_world, merchant, g.BATCH_OPERATION_PURGE, batch_id=batch_id)

    assert refused.data.status == g.BATCH_ADMIN_STATUS_BATCH_NOT_CLOSED
    still = _batch(
        ec_world, merchant, g.BATCH_OPERATION_REQUEST, batch_id=batch_id, return_summary=True
    ).data.batch_status
    assert not still.closed and still.capture_count == 1
