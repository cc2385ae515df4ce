"""After authorization, through the real gateway: every request on a capture token names
the transaction by the TransIDs it was authorized under, or is refused UNKNOWN_LID.

The gateway signs the request's TransIDs back (CapRes, CapRevRes, CredRes, CredRevRes,
AuthRevRes). Before the capture token bound them, a capture naming another order's
LID-M, a 1970 PReqDate and language "zz" succeeded, with a CapRes vouching for them.
Each refusal here is a SET Error for the whole request: nothing decided, nothing stored
under its RRPID, the hold as it was, and the honest request still goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.ledger import Hold
from setcore.auth_reversal import build_auth_reversal_request, open_auth_reversal_response
from setcore.authorization import CAP_TOKEN_CT, seal_cap_token
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
from setcore.encoding import parse_strict
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import common_pb2, crypto_pb2

from .actors import Merchant, World, eur
from .test_settlement import Authorized, _authorized, capture, credit

UNKNOWN_LID = ErrorCode.ERROR_CODE_UNKNOWN_LID

# One change of each id the merchant could name the authorization by, but the XID.
CHANGES: dict[str, Any] = {
    "lid_m": b"ORDER-OF-SOMEONE-ELSE",
    "lid_c": b"another wallet",
    "preq_date_unix_ms": 1,
    "language": "zz",
    "pay_sys_id": "other",
}


def _ids(auth: Authorized, **changes: Any) -> common_pb2.TransIDs:
    ids = common_pb2.TransIDs()
    ids.CopyFrom(auth.bought.order.trans_ids)
    for name, value in changes.items():
        setattr(ids, name, value)
    return ids


def _token_data(world: World, token: bytes) -> a.CapTokenData:
    sealed = parse_strict(crypto_pb2.Sealed, token, own_content_type=False)
    return parse_strict(a.CapTokenData, world.running.bank.token_key.open(sealed, CAP_TOKEN_CT))


def _hold(world: World, auth: Authorized, token: bytes | None = None) -> Hold:
    return world.running.ledger.hold(_token_data(world, token or auth.token).hold_id)


def _refused(
    world: World,
    send: Callable[[], tuple[Any, Any]],
    open_response: Callable[..., Any],
    merchant: Merchant,
) -> int:
    """The Error code a request is refused with, once sure nothing is stored under it."""
    response, state = send()
    with pytest.raises(PeerError) as caught:
        open_response(
            response, merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    assert world.running.ledger.stored_response(state.rrpid, state.request_digest) is None
    return caught.value.code


def _capture_with(
    world: World, merchant: Merchant, items: list[CaptureItem]
) -> Callable[[], tuple[Any, Any]]:
    def send() -> tuple[Any, Any]:
        request, state = build_capture_request(
            merchant.credentials, merchant.gateway_kex.recipient(), items, merchant.merchant_id
        )
        return world.gateway.Capture(request), state

    return send


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_capture_naming_other_ids_is_refused_and_captures_nothing(
    ec_world: World, ec_merchant: Merchant, field: str
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    before = _hold(ec_world, auth)
    item = CaptureItem(_ids(auth, **{field: CHANGES[field]}), auth.rrpid, auth.token, eur(100))
    send = _capture_with(ec_world, ec_merchant, [item])
    assert _refused(ec_world, send, open_capture_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth) == before
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 0
    # The authorization is whole: the honest capture of all of it goes through.
    assert capture(ec_world, ec_merchant, auth, 1000)[:2] == ("CAP_CODE_SUCCESS", 1000)


def test_one_item_naming_other_ids_refuses_the_whole_capture(
    ec_world: World, ec_merchant: Merchant
) -> None:
    good, bad = _authorized(ec_world, ec_merchant, 500), _authorized(ec_world, ec_merchant, 700)
    items = [
        CaptureItem(good.bought.order.trans_ids, good.rrpid, good.token, eur(500)),
        CaptureItem(_ids(bad, lid_m=b"another order"), bad.rrpid, bad.token, eur(700)),
    ]
    send = _capture_with(ec_world, ec_merchant, items)
    assert _refused(ec_world, send, open_capture_response, ec_merchant) == UNKNOWN_LID
    for auth in (good, bad):
        assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 0
        assert _hold(ec_world, auth).captured == 0


def test_the_capture_answer_repeats_the_ids_authorized(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    assert _token_data(ec_world, auth.token).trans_ids_digest  # bound when authorized
    item = CaptureItem(auth.bought.order.trans_ids, auth.rrpid, auth.token, eur(400))
    request, state = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    result = open_capture_response(
        ec_world.gateway.Capture(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    answered = result.items[0]
    assert answered.cap_res_payload.cap_code == a.CAP_CODE_SUCCESS
    assert answered.trans_ids == auth.bought.order.trans_ids


def _rev_or_cred(
    world: World, merchant: Merchant, build: Callable[..., Any], rpc: str, item: CapRevOrCredItem
) -> Callable[[], tuple[Any, Any]]:
    def send() -> tuple[Any, Any]:
        request, state = build(
            merchant.credentials, merchant.gateway_kex.recipient(), [item], merchant.merchant_id
        )
        return getattr(world.gateway, rpc)(request), state

    return send


def test_a_capture_reversal_naming_other_ids_is_refused_and_undoes_nothing(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    _, _, captured, _ = capture(ec_world, ec_merchant, auth, 600)
    before = _hold(ec_world, auth)
    for field, value in CHANGES.items():
        item = CapRevOrCredItem(
            _ids(auth, **{field: value}), auth.rrpid, auth.token, eur(600),
            original_rrpid=captured,
        )  # fmt: skip
        send = _rev_or_cred(
            ec_world, ec_merchant, build_capture_reversal_request, "CaptureReversal", item
        )
        assert _refused(ec_world, send, open_capture_reversal_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth) == before
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 600
    honest = CapRevOrCredItem(
        auth.bought.order.trans_ids, auth.rrpid, auth.token, eur(600), original_rrpid=captured
    )
    request, state = build_capture_reversal_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [honest],
        ec_merchant.merchant_id,
    )  # fmt: skip
    result = open_capture_reversal_response(
        ec_world.gateway.CaptureReversal(request), ec_merchant.credentials, state,
        ec_merchant.trust, gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.items[0].code == c.CAP_REV_OR_CRED_CODE_SUCCESS
    assert result.items[0].trans_ids == auth.bought.order.trans_ids


def test_a_credit_naming_other_ids_is_refused_and_refunds_nothing(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    capture(ec_world, ec_merchant, auth, 600)
    before = _hold(ec_world, auth)
    for field, value in CHANGES.items():
        item = CapRevOrCredItem(_ids(auth, **{field: value}), auth.rrpid, auth.token, eur(200))
        send = _rev_or_cred(ec_world, ec_merchant, build_credit_request, "Credit", item)
        assert _refused(ec_world, send, open_credit_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth) == before
    assert credit(ec_world, ec_merchant, auth, 200)[0] == "CAP_REV_OR_CRED_CODE_SUCCESS"
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 400


def test_a_credit_reversal_naming_other_ids_is_refused_and_undoes_nothing(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    capture(ec_world, ec_merchant, auth, 600)
    _, refund = credit(ec_world, ec_merchant, auth, 200)
    before = _hold(ec_world, auth)
    for field, value in CHANGES.items():
        item = CapRevOrCredItem(
            _ids(auth, **{field: value}), auth.rrpid, auth.token, eur(200), original_rrpid=refund
        )
        send = _rev_or_cred(
            ec_world, ec_merchant, build_credit_reversal_request, "CreditReversal", item
        )
        assert _refused(ec_world, send, open_credit_reversal_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth) == before
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 400


def _auth_reversal(
    world: World,
    merchant: Merchant,
    ids: common_pb2.TransIDs,
    auth: Authorized,
    token: bytes,
    new_amount: int,
) -> Callable[[], tuple[Any, Any]]:
    def send() -> tuple[Any, Any]:
        request, state = build_auth_reversal_request(
            merchant.credentials, merchant.gateway_kex.recipient(), ids, auth.rrpid, token,
            eur(new_amount), merchant.merchant_id,
        )  # fmt: skip
        return world.gateway.AuthReversal(request), state

    return send


def _reversed(world: World, merchant: Merchant, send: Callable[[], tuple[Any, Any]]) -> Any:
    response, state = send()
    return open_auth_reversal_response(
        response, merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip


def test_an_authorization_reversal_naming_other_ids_is_refused_and_releases_nothing(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    before = _hold(ec_world, auth)
    for field, value in CHANGES.items():
        send = _auth_reversal(ec_world, ec_merchant, _ids(auth, **{field: value}), auth,
                              auth.token, 0)  # fmt: skip
        assert _refused(ec_world, send, open_auth_reversal_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth) == before
    assert ec_world.running.ledger.card_account(auth.account_id).pending == 1000


def test_the_token_reissued_by_a_reversal_still_binds_the_ids(
    ec_world: World, ec_merchant: Merchant
) -> None:
    auth = _authorized(ec_world, ec_merchant, 1000)
    honest = auth.bought.order.trans_ids
    result = _reversed(
        ec_world, ec_merchant, _auth_reversal(ec_world, ec_merchant, honest, auth, auth.token, 400)
    )
    assert result.auth_rev_code == a.AUTH_REV_CODE_APPROVED
    assert result.data.trans_ids == honest
    reissued = result.baggage.cap_token_new
    assert (
        _token_data(ec_world, reissued).trans_ids_digest
        == _token_data(ec_world, auth.token).trans_ids_digest
    )
    item = CaptureItem(_ids(auth, lid_m=b"another order"), auth.rrpid, reissued, eur(400))
    send = _capture_with(ec_world, ec_merchant, [item])
    assert _refused(ec_world, send, open_capture_response, ec_merchant) == UNKNOWN_LID
    assert _hold(ec_world, auth, reissued).captured == 0


def _sealed_before_the_digest(world: World, token: bytes) -> bytes:
    """``token`` as a gateway of the earlier release sealed it: without the ids' digest."""
    data = _token_data(world, token)
    data.ClearField("trans_ids_digest")
    return seal_cap_token(world.running.bank.token_key, data)


def test_a_token_sealed_before_the_digest_still_captures_and_reverses(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # Outstanding in running banks when they upgrade: they bind the XID alone, as before.
    auth = _authorized(ec_world, ec_merchant, 1000)
    old = _sealed_before_the_digest(ec_world, auth.token)
    honest = auth.bought.order.trans_ids
    result = _reversed(
        ec_world, ec_merchant, _auth_reversal(ec_world, ec_merchant, honest, auth, old, 600)
    )
    assert result.auth_rev_code == a.AUTH_REV_CODE_APPROVED
    # Reissued as it came: the request's ids were never checked against the PI's.
    reissued = result.baggage.cap_token_new
    assert _token_data(ec_world, reissued).trans_ids_digest == b""
    item = CaptureItem(honest, auth.rrpid, reissued, eur(600))
    request, state = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    captured = open_capture_response(
        ec_world.gateway.Capture(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert captured.items[0].cap_res_payload.cap_code == a.CAP_CODE_SUCCESS
    assert ec_world.running.ledger.card_account(auth.account_id).posted_debt == 600
