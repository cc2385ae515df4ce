"""A PI's age through the real gateway: the order date the cardholder signed (PReqDate)
against ``gateway.authorize.PI_MAX_AGE_MS`` and the clocks' tolerance.

The AuthReq around each PI here is dated afresh and inside its window, so a refusal can
only be the PI's own date. Each refusal is a SET Error that holds nothing on the card; a
request decided while its PI was young is answered with its stored answer once its PI is
past the bound.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from gateway.authorize import PI_MAX_AGE_MS
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.clocks import clocks_moved

from . import actors
from .actors import (
    Cardholder,
    Merchant,
    Purchase,
    World,
    auth_request,
    register_cardholder,
    send_failing_declines,
)
from .test_authorize_checks import _decision, _names, _pending, _refused

MINUTE_MS = 60 * 1000


def _bought_at(
    monkeypatch: pytest.MonkeyPatch,
    merchant: Merchant,
    cardholder: Cardholder,
    amount: int,
    offset_ms: int,
) -> Purchase:
    """A purchase whose order date is ``offset_ms`` from now (negative: before), made then:
    the merchant dates it and the wallet and merchant check it on clocks moved as much."""
    wall = time.time
    with monkeypatch.context() as then:
        clocks_moved(then, offset_ms)
        then.setattr(actors, "time", SimpleNamespace(time=lambda: wall() + offset_ms / 1000))
        bought = actors.purchase(merchant, cardholder, amount)
    signed = bought.order.trans_ids.preq_date_unix_ms
    assert abs(signed - (int(wall() * 1000) + offset_ms)) < MINUTE_MS  # dated as asked
    return bought


def test_a_pi_signed_longer_ago_than_the_bound_is_refused_and_holds_nothing(
    ec_world: World,
    ec_merchant: Merchant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 400, -PI_MAX_AGE_MS - MINUTE_MS)
    request, state = auth_request(ec_merchant, bought)  # dated now: fresh
    with caplog.at_level(logging.INFO, "setpay.gateway"):
        assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert "MESSAGE_TOO_OLD (PReqDate signed in the PI before the window)" in caplog.text
    assert _pending(ec_world, cardholder) == 0
    # The same bytes again: refused again, still nothing held (no answer was stored).
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert _pending(ec_world, cardholder) == 0


def test_a_pi_signed_just_inside_the_bound_is_authorized(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 410, -PI_MAX_AGE_MS + MINUTE_MS)
    request, state = auth_request(ec_merchant, bought)
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload)[0] == "AUTH_CODE_APPROVED"
    assert _pending(ec_world, cardholder) == 410


def test_a_pi_dated_ahead_of_the_window_is_refused_and_holds_nothing(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wallet and merchant agreed on a date well ahead of the gateway's clock.
    cardholder = register_cardholder(ec_world)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 420, 2 * FRESHNESS_WINDOW_MS)
    request, state = auth_request(ec_merchant, bought)  # dated now: fresh
    assert _refused(ec_world, ec_merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_NEW"
    assert _pending(ec_world, cardholder) == 0


def test_a_request_decided_while_its_pi_was_young_gets_its_stored_answer_after_the_bound(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    cardholder = register_cardholder(ec_world)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 430, -PI_MAX_AGE_MS + MINUTE_MS)
    request, state = auth_request(ec_merchant, bought)
    first = ec_world.gateway.Authorize(request)
    assert _names(_decision(ec_world, ec_merchant, request, state))[0] == "AUTH_CODE_APPROVED"
    # Two minutes on: the AuthReq is still inside its window, its PI past the bound.
    clocks_moved(monkeypatch, 2 * MINUTE_MS)
    again = ec_world.gateway.Authorize(request)
    assert again.WhichOneof("result") == "auth_res"
    assert again.auth_res == first.auth_res  # the stored answer, byte for byte
    assert _pending(ec_world, cardholder) == 430  # one hold
    # A request built afresh around the same PI now is refused for its age.
    fresh, fresh_state = auth_request(ec_merchant, bought)
    assert _refused(ec_world, ec_merchant, fresh, fresh_state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    assert _pending(ec_world, cardholder) == 430


def test_a_decision_left_unanswered_is_answered_as_of_its_check_after_the_bound(
    ec_world: World, ec_merchant: Merchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Declined while its PI was young, the answer failed to sign: the retry once the PI
    # is past the bound builds it as of the moment it was first checked, not refused.
    cardholder = register_cardholder(ec_world, limit=1000)
    bought = _bought_at(monkeypatch, ec_merchant, cardholder, 5000, -PI_MAX_AGE_MS + MINUTE_MS)
    request, state = auth_request(ec_merchant, bought)
    send_failing_declines(ec_world, request, monkeypatch)
    clocks_moved(monkeypatch, 2 * MINUTE_MS)
    payload = _decision(ec_world, ec_merchant, request, state)
    assert _names(payload) == ("AUTH_CODE_DECLINED", "RESP_REASON_INSUFFICIENT_FUNDS")
    assert _pending(ec_world, cardholder) == 0
