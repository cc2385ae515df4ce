"""A batch query is a read, but its RRPID is the merchant's like any other: one the ledger
already decided for another request is refused RRPID_REUSED, as a capture under it is."""

from __future__ import annotations

import pytest

from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.errors import ErrorCode, PeerError
from setcore.gateway_admin import (
    TransactionPage,
    build_batch_admin_request,
    open_batch_admin_response,
)
from setpay.v1 import gateway_admin_pb2 as g

from .actors import Merchant, World, eur, register_merchant
from .test_settlement import _authorized, capture


def _query(world: World, merchant: Merchant, batch_id: str, rrpid: bytes | None = None):  # type: ignore[no-untyped-def]
    request, state = build_batch_admin_request(
        merchant.credentials, merchant.gateway_kex.recipient(), merchant.merchant_id,
        g.BATCH_OPERATION_REQUEST, batch_id=batch_id, page=TransactionPage(0, 10), rrpid=rrpid,
    )  # fmt: skip
    return open_batch_admin_response(
        world.gateway.BatchAdmin(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip


def test_a_query_under_a_decided_rrpid_is_refused_rrpid_reused(ec_world: World) -> None:
    merchant = register_merchant(ec_world, "M-ec-query-rrpid")
    auth = _authorized(ec_world, merchant, 1000)
    code, _, used, batch_id = capture(ec_world, merchant, auth, 100)
    assert code == "CAP_CODE_SUCCESS"
    with pytest.raises(PeerError) as raised:
        _query(ec_world, merchant, batch_id, rrpid=used)
    assert raised.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED
    # As a capture of other content under that RRPID is: the two refusals agree.
    item = CaptureItem(auth.bought.order.trans_ids, auth.rrpid, auth.token, eur(50))
    request, state = build_capture_request(
        merchant.credentials, merchant.gateway_kex.recipient(), [item], merchant.merchant_id,
        rrpid=used,
    )  # fmt: skip
    with pytest.raises(PeerError) as raised:
        open_capture_response(
            ec_world.gateway.Capture(request), merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    assert raised.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED
    # Nothing moved: the batch holds the one capture; a query under a fresh RRPID reads it.
    fresh = _query(ec_world, merchant, batch_id)
    assert fresh.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
    assert [d.amount.amount for d in fresh.data.transaction_details] == [100]
    summary = ec_world.running.ledger.batch_summary(merchant.merchant_id, batch_id)
    assert summary.status == "open"


def test_a_query_under_its_own_fresh_rrpid_is_answered_each_time(ec_world: World) -> None:
    # Nothing of a query is stored: the same RRPID asked again is answered, not refused.
    merchant = register_merchant(ec_world, "M-ec-query-again")
    batch_id = capture(ec_world, merchant, _authorized(ec_world, merchant, 300), 300)[3]
    rrpid = b"\x07" * 32
    for _ in range(2):
        answer = _query(ec_world, merchant, batch_id, rrpid=rrpid)
        assert answer.data.status == g.BATCH_ADMIN_STATUS_SUCCESS
        assert answer.data.batch_status.captured_total.amount == 300
