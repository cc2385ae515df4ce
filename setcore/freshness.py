"""Identifiers and freshness: RRPIDs, XIDs, challenges, dates and the tolerance window.

Every request gets a fresh 32-byte RRPID; the party that will verify a signature supplies
a 32-byte challenge that the signer must echo inside the signed data; dates outside the
window are refused (SET-PROTOCOL.md 3.3 and 9.3.5).
"""

from __future__ import annotations

import hmac
import os
import time

from setcore.errors import ErrorCode, fail

# Random identifiers and challenges: 32 bytes (DESIGN.md section 3).
ID_BYTES = 32
# Local labels (LID-C, LID-M, LID-EE, LID-CA) are short and chosen by their owner.
MAX_LID_BYTES = 32
# How far a message's date may be from our clock. Five minutes covers clock skew between
# hosts synchronised by NTP and a slow retry; replay caches keep RRPIDs longer than this.
FRESHNESS_WINDOW_MS = 5 * 60 * 1000
# How long after the purchase a merchant may have it authorized: the gateway refuses an
# AuthReq whose PI's signed order date (PReqDate) is older (MESSAGE_TOO_OLD), the code it
# gives a request whose own date left the window above. Seven days, the default life of
# a hold (``gateway.authorize`` says why). Here, below both sides, because the merchant
# must tell the two refusals apart: a request gone stale is built afresh, a PI past this
# bound never can be (``clients.merchant.renewal``).
PI_MAX_AGE_MS = 7 * 24 * 3600 * 1000


def new_id() -> bytes:
    """A fresh 32-byte random identifier (RRPID, XID, challenge, nonce, secret)."""
    return os.urandom(ID_BYTES)


def now_ms() -> int:
    """Wall-clock time in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def check_id(value: bytes, what: str) -> None:
    """Raise DECODING_FAILURE unless ``value`` is a 32-byte identifier."""
    if len(value) != ID_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"{what} must be {ID_BYTES} bytes")


def check_lid(value: bytes, what: str, *, required: bool = True) -> None:
    """Raise DECODING_FAILURE for a missing or oversize local label."""
    if (required and not value) or len(value) > MAX_LID_BYTES:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, f"{what} must be 1..{MAX_LID_BYTES} bytes"
        )


def check_echo(expected: bytes, got: bytes, what: str) -> None:
    """Raise CHALLENGE_MISMATCH unless the peer echoed exactly our challenge."""
    if not hmac.compare_digest(expected, got):
        raise fail(ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH, f"{what} not echoed")


def check_rrpid(expected: bytes, got: bytes) -> None:
    """Raise UNKNOWN_RRPID unless a response answers the request we sent."""
    if not hmac.compare_digest(expected, got):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, "response answers another request")


def check_date(
    date_ms: int,
    now: int,
    window_ms: int = FRESHNESS_WINDOW_MS,
    *,
    max_age_ms: int | None = None,
    what: str = "message date",
) -> None:
    """Raise MESSAGE_TOO_OLD / MESSAGE_TOO_NEW for a date outside the window.

    ``max_age_ms``: how old the date may be, for a date signed long before the message
    that carries it is sent (a PI's order date, ``setcore.authorization.check_order_date``);
    it may still be ahead of ``now`` by no more than ``window_ms``, the clocks' tolerance.
    ``what`` names the date in the refusal's reason.
    """
    oldest = now - (window_ms if max_age_ms is None else max_age_ms)
    if date_ms < oldest:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, f"{what} before the window")
    if date_ms > now + window_ms:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW, f"{what} after the window")
