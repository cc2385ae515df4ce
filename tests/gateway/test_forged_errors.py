"""A signed SET Error answers the exact request it names, never one that shares its RRPID.

The RRPID a gateway's Error names comes from the request's plaintext header, which anyone
who can answer on a merchant's connection (a TLS-terminating proxy, an insecure port)
can copy. Sent under a victim's RRPID, garbage, or a stale request of the attacker's
own, gets a genuine, gateway-signed Error; taken for the refusal of the victim's
request, which the gateway had in fact applied, it has the merchant record a refusal
while the money moved, or build its request afresh and have it applied twice. The
Error names the digest of the bytes it refuses (``setcore.error_message``): the victim
opens it as an answer it cannot check (``ProtocolError``: outcome unknown, the same
bytes sent again), never as a refusal.

Real gRPC gateway on port 0, real keys, the bank's real ledger (``tests.gateway.actors``).
"""

from __future__ import annotations

import pytest

from clients.merchant import outcome, renewal
from setcore.authorization import CAP_TOKEN_CT, open_auth_response
from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.encoding import parse_strict
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import common_pb2, crypto_pb2
from tests.clocks import clocks_moved

from .actors import (
    Merchant,
    World,
    auth_request,
    authorize,
    eur,
    purchase,
    register_cardholder,
    register_merchant,
)

# Past the freshness window, as the gateway counts it: the attacker's request is refused
# as too old (MESSAGE_TOO_OLD), the Error a merchant answers by building afresh.
STALE_MS = 10 * 60 * 1000
DIGEST_MISMATCH = ErrorCode.ERROR_CODE_DIGEST_MISMATCH


def _hold_of(world: World, token: bytes) -> int:
    """The id of the hold a capture token of this bank is for."""
    sealed = parse_strict(crypto_pb2.Sealed, token, own_content_type=False)
    data = world.running.bank.token_key.open(sealed, CAP_TOKEN_CT)
    return parse_strict(a.CapTokenData, data).hold_id


def test_garbage_under_a_victims_rrpid_is_no_refusal_of_its_authorization(
    ec_world: World, ec_merchant: Merchant
) -> None:
    holder = register_cardholder(ec_world)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, holder, 700))
    assert ec_world.gateway.Authorize(request).WhichOneof("result") == "auth_res"
    assert ec_world.running.ledger.card_account(holder.account_id).pending == 700
    # Garbage with the victim's RRPID in the plain header: the gateway signs its Error.
    garbage = a.AuthorizeRequest(
        header=common_pb2.Header(rrpid=request.header.rrpid), auth_req=b"\xff" * 64
    )
    forged = ec_world.gateway.Authorize(garbage)
    assert forged.WhichOneof("result") == "error"
    with pytest.raises(ProtocolError) as caught:
        open_auth_response(
            forged, ec_merchant.credentials, state, ec_merchant.trust,
            gateway_identity=ec_merchant.gateway_identity,
        )  # fmt: skip
    assert not isinstance(caught.value, PeerError)  # no refusal for ``outcome`` to record
    assert caught.value.code == DIGEST_MISMATCH
    # Outcome unknown: the same bytes go again, and get the decision that was made.
    again = ec_world.gateway.Authorize(request)
    result = open_auth_response(
        again, ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == a.AUTH_CODE_APPROVED
    assert ec_world.running.ledger.card_account(holder.account_id).pending == 700


def test_a_stale_request_under_a_victims_rrpid_does_not_have_its_capture_made_again(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, holder, 1000)
    auth = authorize(ec_world, ec_merchant, bought)
    token, auth_rrpid = auth.baggage.cap_token, auth.data.auth_tags.auth_rr_tags.rrpid
    item = CaptureItem(bought.order.trans_ids, auth_rrpid, token, eur(400))
    request, state = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    assert ec_world.gateway.Capture(request).WhichOneof("result") == "cap_res"
    # Another merchant's request of its own, dated past the window, under the victim's RRPID.
    attacker = register_merchant(ec_world, "M-forger")
    clocks_moved(monkeypatch, -STALE_MS)
    stale, _ = build_capture_request(
        attacker.credentials, attacker.gateway_kex.recipient(),
        [CaptureItem(bought.order.trans_ids, auth_rrpid, token, eur(1))], attacker.merchant_id,
    )  # fmt: skip
    monkeypatch.undo()
    forged = ec_world.gateway.Capture(
        c.CaptureRequest(
            header=common_pb2.Header(rrpid=request.header.rrpid), cap_req=stale.cap_req
        )
    )
    assert forged.WhichOneof("result") == "error"
    with pytest.raises(ProtocolError) as caught:
        open_capture_response(
            forged, ec_merchant.credentials, state, ec_merchant.trust,
            gateway_identity=ec_merchant.gateway_identity,
        )  # fmt: skip
    assert not isinstance(caught.value, PeerError)  # nothing for ``renewal`` to build afresh
    assert caught.value.code == DIGEST_MISMATCH
    # The same bytes again: the capture made, once.
    result = open_capture_response(
        ec_world.gateway.Capture(request), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.items[0].cap_res_payload.cap_code == a.CAP_CODE_SUCCESS
    assert ec_world.running.ledger.hold(_hold_of(ec_world, token)).captured == 400


def test_a_request_sent_to_another_method_is_another_request(
    ec_world: World, ec_merchant: Merchant
) -> None:
    # The victim's capture bytes, header and all, sent as a capture reversal: refused, and
    # the Error names them in the call they came in, not the capture the victim sent.
    holder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, holder, 500)
    auth = authorize(ec_world, ec_merchant, bought)
    rrpid = auth.data.auth_tags.auth_rr_tags.rrpid
    item = CaptureItem(bought.order.trans_ids, rrpid, auth.baggage.cap_token, eur(500))
    request, state = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    assert ec_world.gateway.Capture(request).WhichOneof("result") == "cap_res"
    elsewhere = ec_world.gateway.CaptureReversal(
        c.CaptureReversalRequest(header=request.header, cap_rev_req=request.cap_req)
    )
    assert elsewhere.WhichOneof("result") == "error"
    relayed = c.CaptureResponse(header=elsewhere.header, error=elsewhere.error)
    with pytest.raises(ProtocolError) as caught:
        open_capture_response(
            relayed, ec_merchant.credentials, state, ec_merchant.trust,
            gateway_identity=ec_merchant.gateway_identity,
        )  # fmt: skip
    assert not isinstance(caught.value, PeerError)
    assert caught.value.code == DIGEST_MISMATCH


def test_a_refusal_of_the_merchants_own_request_is_still_its_refusal(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merchant's own capture, dated past the window: the gateway's Error names those
    # very bytes, and the merchant reads the refusal it is (built afresh by ``renewal``).
    holder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, holder, 300)
    auth = authorize(ec_world, ec_merchant, bought)
    rrpid = auth.data.auth_tags.auth_rr_tags.rrpid
    item = CaptureItem(bought.order.trans_ids, rrpid, auth.baggage.cap_token, eur(300))
    clocks_moved(monkeypatch, -STALE_MS)
    request, state = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    monkeypatch.undo()
    with pytest.raises(PeerError) as caught:
        open_capture_response(
            ec_world.gateway.Capture(request), ec_merchant.credentials, state,
            ec_merchant.trust, gateway_identity=ec_merchant.gateway_identity,
        )  # fmt: skip
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    assert renewal.refused_as_stale(caught.value) and outcome.is_refusal(caught.value)
