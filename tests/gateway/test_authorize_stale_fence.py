"""Through the real gateway: a refusal as too old (MESSAGE_TOO_OLD: the AuthReq's date, or
its PI's order date) is final. Once it is answered, an earlier sending of the same bytes
that reaches the ledger late (its commit stalled) is refused alike and holds nothing, so
the merchant may build the request afresh (``clients.merchant.renewal``) without a second
hold on the card. A refusal the gateway cannot make final is UNAVAILABLE, never the
refusal; other refusals write nothing.
"""

from __future__ import annotations

import os

import grpc
import pytest

from gateway.answers import _error_code
from gateway.ledger import Ledger, LedgerError, StoreUnavailable
from setcore import freshness
from setcore.authorization import AuthRequestState
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, PI_MAX_AGE_MS
from setcore.gateway_exchange import peek_rrpid, request_digest
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import crypto_pb2
from tests.clocks import clocks_moved

from .actors import (
    EUR,
    EXPIRY,
    Cardholder,
    Merchant,
    World,
    auth_request,
    purchase,
    register_cardholder,
)
from .test_authorize_checks import _pending, _refused
from .test_authorize_pi_age import MINUTE_MS, _bought_at


def _ids(request: a.AuthorizeRequest) -> tuple[bytes, bytes]:
    """The RRPID and digest the ledger knows these request bytes by."""
    return peek_rrpid(request.auth_req), request_digest(
        request.DESCRIPTOR.full_name, request.auth_req
    )


def _late_decision(
    world: World, merchant: Merchant, request: a.AuthorizeRequest, cardholder: Cardholder
) -> bytes:
    """An earlier sending of ``request``'s bytes, let in while fresh (checked a second
    ago), reaching the ledger only now: decided as the gateway would decide it."""
    rrpid, digest = _ids(request)
    return world.running.ledger.authorize(
        pan=cardholder.card.pan.reveal(), pan_expiry=EXPIRY, amount=250, currency=EUR,
        merchant_id=merchant.merchant_id, xid=os.urandom(32), pi_digest=os.urandom(32),
        rrpid=rrpid, request_digest=digest,
        respond=lambda outcome: b"a late approval", checked_at_ms=freshness.now_ms() - 1000,
    )  # fmt: skip


def _stale_request(
    world: World, merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> tuple[a.AuthorizeRequest, AuthRequestState, Cardholder]:
    """An AuthReq built now and sent once its date is past the window: (request, state,
    cardholder)."""
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 250))
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)
    return request, state, cardholder


def test_a_sending_decided_after_a_refusal_as_too_old_is_refused_and_holds_nothing(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, state, cardholder = _stale_request(ec_world, ec_merchant, monkeypatch)
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    with pytest.raises(LedgerError) as late:
        _late_decision(ec_world, ec_merchant, request, cardholder)
    assert _error_code(late.value) == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    assert _pending(ec_world, cardholder) == 0
    # The same bytes again: refused again, and still final.
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert _pending(ec_world, cardholder) == 0


def test_a_pi_refused_as_too_old_is_final_too(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 250, -PI_MAX_AGE_MS - MINUTE_MS)
    request, state = auth_request(ec_merchant, bought)  # dated now: only the PI is old
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    with pytest.raises(LedgerError) as late:
        _late_decision(ec_world, ec_merchant, request, cardholder)
    assert _error_code(late.value) == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    assert _pending(ec_world, cardholder) == 0


def test_a_refusal_as_too_old_that_cannot_be_made_final_is_unavailable(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, state, cardholder = _stale_request(ec_world, ec_merchant, monkeypatch)

    def unavailable(self: Ledger, rrpid: bytes, digest: bytes) -> None:
        raise StoreUnavailable("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(Ledger, "fence_stale", unavailable, raising=False)
        with pytest.raises(grpc.RpcError) as failed:
            ec_world.gateway.Authorize(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # the merchant sends it again
    assert failed.value.details() == "database unavailable"
    # The database back, the same bytes are refused, for good.
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    with pytest.raises(LedgerError):
        _late_decision(ec_world, ec_merchant, request, cardholder)
    assert _pending(ec_world, cardholder) == 0


def test_a_refusal_as_too_new_fences_nothing(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A date ahead of the window may come into it: such bytes may still be decided.
    cardholder = register_cardholder(ec_world)
    bought = purchase(ec_merchant, cardholder, 250)
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)  # the merchant dates it ahead
    request, state = auth_request(ec_merchant, bought)
    monkeypatch.undo()
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_NEW"
    assert _late_decision(ec_world, ec_merchant, request, cardholder) == b"a late approval"
    assert _pending(ec_world, cardholder) == 250


def test_a_too_old_request_whose_envelope_does_not_open_fences_nothing(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dates are checked on signed data only: bytes that do not open and verify as the
    merchant's are refused for that, and the ledger is not written (a peer that cannot
    sign as the merchant cannot fence its RRPIDs)."""
    request, state, cardholder = _stale_request(ec_world, ec_merchant, monkeypatch)
    envelope = crypto_pb2.SealedWithBaggage.FromString(request.auth_req)
    envelope.sealed.ciphertext = envelope.sealed.ciphertext[:-1] + bytes(
        [envelope.sealed.ciphertext[-1] ^ 1]
    )
    tampered = a.AuthorizeRequest()
    tampered.CopyFrom(request)
    tampered.auth_req = envelope.SerializeToString()
    code = _refused(ec_world, ec_merchant, tampered, state)
    assert code != "ERROR_CODE_MESSAGE_TOO_OLD", code  # refused before its date is read
    rrpid, digest = _ids(tampered)
    assert rrpid == _ids(request)[0]
    assert ec_world.running.ledger.stored_response(rrpid, digest) is None  # no fence
    # The merchant's own bytes, let in earlier, are still decided.
    assert _late_decision(ec_world, ec_merchant, request, cardholder) == b"a late approval"
    assert _pending(ec_world, cardholder) == 250
