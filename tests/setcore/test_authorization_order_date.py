"""The gateway's checks of what a PI's dates and digests say on their own (SET-PROTOCOL.md
9.3.5): the order date the cardholder signed (PReqDate) no older than the gateway's bound
nor ahead of its clock by more than the window, and order digests of a digest's size.

The AuthReq around a PI is dated afresh, so only the PI's own date says when the
cardholder bought; two empty digests would compare equal and agree on nothing.
"""

from __future__ import annotations

import dataclasses

import pytest

from setcore.authorization import (
    DD_BYTES,
    PaymentInstruction,
    VerifiedAuthRequest,
    check_agreement,
    check_order_date,
)
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, check_date

from .certified import Certified
from .refusals import refused
from .test_purchase import _preq, _shop
from .test_purchase_gateway import _auth

TOO_OLD = ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
TOO_NEW = ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW
DECODING = ErrorCode.ERROR_CODE_DECODING_FAILURE
DAY_MS = 24 * 3600 * 1000
# A bound for these tests, any the gateway might choose: the check takes it as given.
MAX_AGE_MS = 3 * DAY_MS
NOW = 1_700_000_000_000


@pytest.fixture
def opened(ec: Certified) -> tuple[VerifiedAuthRequest, PaymentInstruction]:
    """An agreeing AuthReq and its PI, opened as the gateway does."""
    shop = _shop(ec)
    return _auth(shop, _preq(shop))  # type: ignore[no-any-return]


# --- the order date the cardholder signed ---------------------------------------------


def test_a_pi_signed_up_to_the_bound_ago_or_up_to_the_window_ahead_is_accepted(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction],
) -> None:
    _, pi = opened
    signed = pi.head.trans_ids.preq_date_unix_ms
    check_order_date(pi, max_age_ms=MAX_AGE_MS, now=signed)
    check_order_date(pi, max_age_ms=MAX_AGE_MS, now=signed + MAX_AGE_MS)  # just inside
    check_order_date(pi, max_age_ms=MAX_AGE_MS, now=signed - FRESHNESS_WINDOW_MS)
    check_order_date(pi, max_age_ms=MAX_AGE_MS)  # now: the PI was signed a moment ago


def test_a_pi_signed_longer_ago_than_the_bound_is_refused_as_too_old(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction],
) -> None:
    _, pi = opened
    signed = pi.head.trans_ids.preq_date_unix_ms
    reason = refused(
        TOO_OLD, check_order_date, pi, max_age_ms=MAX_AGE_MS, now=signed + MAX_AGE_MS + 1
    )
    assert reason == "PReqDate signed in the PI before the window"
    # The AuthReq's own window is not the bound: a PI a day old is inside this one.
    check_order_date(pi, max_age_ms=MAX_AGE_MS, now=signed + DAY_MS)


def test_a_pi_dated_ahead_of_the_clock_by_more_than_the_window_is_refused_as_too_new(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction],
) -> None:
    _, pi = opened
    signed = pi.head.trans_ids.preq_date_unix_ms
    ahead = signed - FRESHNESS_WINDOW_MS - 1
    reason = refused(TOO_NEW, check_order_date, pi, max_age_ms=MAX_AGE_MS, now=ahead)
    assert reason == "PReqDate signed in the PI after the window"


def test_a_pi_without_an_order_date_is_refused_as_too_old(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction],
) -> None:
    # An unset PReqDate reads as 1970: older than any bound, never "no date, no check".
    _, pi = opened
    pi.head.trans_ids.preq_date_unix_ms = 0
    refused(TOO_OLD, check_order_date, pi, max_age_ms=MAX_AGE_MS, now=NOW)


def test_a_longer_age_bound_moves_only_the_old_end_of_the_window() -> None:
    check_date(NOW - MAX_AGE_MS, NOW, max_age_ms=MAX_AGE_MS)
    refused(TOO_OLD, check_date, NOW - MAX_AGE_MS - 1, NOW, max_age_ms=MAX_AGE_MS)
    check_date(NOW + FRESHNESS_WINDOW_MS, NOW, max_age_ms=MAX_AGE_MS)
    refused(TOO_NEW, check_date, NOW + FRESHNESS_WINDOW_MS + 1, NOW, max_age_ms=MAX_AGE_MS)
    # Without one, the reasons are the message date's, as every other caller has them.
    assert refused(TOO_OLD, check_date, NOW - FRESHNESS_WINDOW_MS - 1, NOW) == (
        "message date before the window"
    )


# --- order digests of a digest's size --------------------------------------------------


@pytest.mark.parametrize("field", ["hoi_data", "hod2"])
@pytest.mark.parametrize("size", [0, DD_BYTES - 1, DD_BYTES + 1])
def test_an_order_digest_of_another_size_is_refused_as_malformed(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction], field: str, size: int
) -> None:
    verified, pi = opened
    setattr(verified.data.check_digests, field, bytes(size))
    name = {"hoi_data": "HOIData", "hod2": "HOD2"}[field]
    reason = refused(DECODING, check_agreement, verified, pi)
    assert reason == f"{name} is not a {DD_BYTES}-byte digest"


@pytest.mark.parametrize("field", ["hoi_data", "hod2"])
def test_empty_digests_on_both_sides_do_not_agree(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction], field: str
) -> None:
    # What the merchant says and what the PI carries, both empty: equal, and about nothing.
    verified, pi = opened
    setattr(verified.data.check_digests, field, b"")
    if field == "hod2":
        pi.head.hod = b""
    else:
        pi = dataclasses.replace(pi, view=dataclasses.replace(pi.view, dd_oi_data=b""))
    refused(DECODING, check_agreement, verified, pi)


def test_digests_of_the_right_size_still_agree(
    opened: tuple[VerifiedAuthRequest, PaymentInstruction],
) -> None:
    verified, pi = opened
    assert len(verified.data.check_digests.hoi_data) == DD_BYTES
    assert len(verified.data.check_digests.hod2) == DD_BYTES
    check_agreement(verified, pi)
