"""SET's BatchSequenceNum in a CredRes, CredRevRes and CapRevRes, through the real gateway:
each names where its transaction sits in its batch, as the batch's own list says."""

from __future__ import annotations

from setcore.cap_rev_or_cred import (
    build_capture_reversal_request,
    build_credit_request,
    build_credit_reversal_request,
    open_capture_reversal_response,
    open_credit_response,
    open_credit_reversal_response,
)
from setcore.gateway_admin import TransactionPage
from setpay.v1 import capture_pb2 as c
from setpay.v1 import gateway_admin_pb2 as g

from .actors import World, register_merchant
from .test_settlement import _authorized, _item, capture
from .test_settlement_figures import _batch


def test_each_answer_names_its_place_in_the_batch(ec_world: World) -> None:
    merchant = register_merchant(ec_world, "M-ec-sequence")
    kex, ident = merchant.gateway_kex.recipient(), merchant.gateway_identity
    auth = _authorized(ec_world, merchant, 1000)
    _, _, capture_rrpid, batch_id = capture(ec_world, merchant, auth, 600)

    request, state = build_credit_request(
        merchant.credentials, kex, [_item(auth, 200)], merchant.merchant_id
    )
    rrpids = [state.rrpid]
    credited = open_credit_response(
        ec_world.gateway.Credit(request), merchant.credentials, state, merchant.trust,
        gateway_identity=ident,
    ).items[0]  # fmt: skip
    reversal, state = build_credit_reversal_request(
        merchant.credentials, kex, [_item(auth, 200, state.rrpid)], merchant.merchant_id
    )
    rrpids.append(state.rrpid)
    credit_reversed = open_credit_reversal_response(
        ec_world.gateway.CreditReversal(reversal), merchant.credentials, state, merchant.trust,
        gateway_identity=ident,
    ).items[0]  # fmt: skip
    other = _authorized(ec_world, merchant, 300)
    _, _, other_capture, _ = capture(ec_world, merchant, other, 300)
    cap_reversal, state = build_capture_reversal_request(
        merchant.credentials, kex, [_item(other, 300, other_capture)], merchant.merchant_id
    )
    rrpids.append(state.rrpid)
    capture_reversed = open_capture_reversal_response(
        ec_world.gateway.CaptureReversal(cap_reversal), merchant.credentials, state, merchant.trust,
        gateway_identity=ident,
    ).items[0]  # fmt: skip

    answered = [credited, credit_reversed, capture_reversed]
    assert [i.code for i in answered] == [c.CAP_REV_OR_CRED_CODE_SUCCESS] * 3
    assert {i.batch_id for i in answered} == {batch_id}
    listed = _batch(
        ec_world, merchant, g.BATCH_OPERATION_REQUEST, batch_id=batch_id,
        page=TransactionPage(0, 10),
    ).data.transaction_details  # fmt: skip
    # What the batch lists as each answered transaction's place is what its answer said.
    place = {d.rrpid: d.batch_sequence_num for d in listed}
    assert len(place) == 5 and capture_rrpid in place
    assert [i.batch_sequence_num for i in answered] == [place[r] for r in rrpids]
    assert all(i.batch_sequence_num > 0 for i in answered)
