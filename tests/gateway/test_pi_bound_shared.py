"""The gateway's bound on a PI's age is the one the merchant judges its refusals by
(``setcore.freshness.PI_MAX_AGE_MS``), and still a hold's default life, as
``gateway.authorize`` says it is."""

from __future__ import annotations

from clients.merchant import renewal
from gateway import authorize
from gateway.ledger.ledger import HOLD_LIFETIME_MS
from setcore import freshness


def test_the_gateway_refuses_by_the_bound_the_merchant_reads() -> None:
    assert authorize.PI_MAX_AGE_MS is freshness.PI_MAX_AGE_MS
    assert renewal.PI_MAX_AGE_MS is freshness.PI_MAX_AGE_MS


def test_the_bound_is_a_holds_default_life() -> None:
    assert freshness.PI_MAX_AGE_MS == HOLD_LIFETIME_MS == 7 * 24 * 3600 * 1000
