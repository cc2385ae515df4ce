"""What one ledger call may carry, and the checks ``Ledger`` makes before any store work.

Every check raises InvalidRequest naming the argument and its bounds, never its value:
a bad call changes nothing and leaks nothing (an amount, an id or a PAN stays out of the
message).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.ledger.errors import InvalidRequest
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem
from setcore.currency import why_refused

# Largest amount of one operation or credit limit, in minor units: 10^12 cents is ten
# billion in major units, beyond any card. It bounds each posting, not an account's
# running sums (debits_posted, credits_posted), which only grow: a refund and its
# reversal add at most the card's credit limit to each of the card's two, and may be
# repeated. So some 9.2 million such pairs on a card with the largest limit would pass
# int64; what keeps real cards far below is their limit (at ten thousand in major units,
# a million times as many pairs). Should a sum get there, the posting is refused
# whole on either store (StoreError, nothing written): SQLite's STRICT column will not
# take the REAL its overflowing sum becomes, PostgreSQL raises numeric_value_out_of_range
# for the BIGINT. The sum never wraps.
MAX_AMOUNT = 10**12
# Items in one capture, credit or reversal request: SET batches captures per request;
# bounding it bounds the time one request holds its card locks.
MAX_ITEMS_PER_REQUEST = 100
# XIDs, RRPIDs and digests are 32 bytes in setpay; 64 leaves room for longer hashes.
MAX_ID_BYTES = 64
# Transactions in one batch detail page, so one BatchAdmin answer stays small.
MAX_PAGE_ITEMS = 500
# Holds released by one expire_holds call: keeps the sweep's transaction short.
EXPIRE_BATCH = 500
# The longest an authorization may hold a card's credit: 30 days, the longest the card
# schemes let a hold stand (lodging, car rental). A later expiry is a caller's mistake:
# it would keep the credit tied up long after the merchant may still capture.
MAX_HOLD_LIFETIME_MS = 30 * 24 * 3600 * 1000
# The largest integer the stores' 64-bit columns hold (SQLite INTEGER, PostgreSQL BIGINT).
# Past it the stores part ways: SQLite cannot bind the value at all, PostgreSQL compares
# it as a numeric. So a larger one is refused here, before any SQL, on every store.
MAX_INT64 = 2**63 - 1
# How messages name it: a 19-digit run in a log line reads like a PAN to a scanner.
_MAX_INT64_TEXT = "2**63 - 1"


def check_integer(name: str, value: int) -> None:
    """A Python int: not a bool (True would count as 1), a float or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer")


def check_moment(name: str, value: int) -> None:
    """A time in Unix milliseconds: an integer from 0 to MAX_INT64."""
    check_integer(name, value)
    if not 0 <= value <= MAX_INT64:
        raise InvalidRequest(f"{name} must be between 0 and {_MAX_INT64_TEXT} ms")


def check_flag(name: str, value: bool) -> None:
    """True or False, not merely something truthy (the string "no" is truthy)."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be True or False")


def check_amount(name: str, value: int, *, allow_zero: bool = False) -> None:
    """An integer number of minor units, 1 (or 0) to MAX_AMOUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer number of minor units")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_AMOUNT:
        raise InvalidRequest(f"{name} must be between {low} and {MAX_AMOUNT} minor units")


def check_currency(value: int) -> None:
    """A currency ISO 4217 lists now, with a minor unit: the unit the ledger counts."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("currency must be an ISO 4217 numeric code")
    refused = why_refused(value)
    if refused is not None:
        raise InvalidRequest(refused)


def check_bytes(name: str, value: bytes) -> None:
    """An id or digest: 1 to MAX_ID_BYTES bytes."""
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_ID_BYTES:
        raise InvalidRequest(f"{name} must be 1 to {MAX_ID_BYTES} bytes")


def check_text(name: str, value: str) -> None:
    """A non-empty string (an account, merchant, hold or batch id) without a NUL.

    PostgreSQL's text cannot hold a NUL and SQLite's can, so the stores would answer such
    an id differently (a database error, a thing not found); protobuf strings may carry one.
    """
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")
    if "\x00" in value:
        raise InvalidRequest(f"{name} must not contain a NUL character")


def check_optional_text(name: str, value: str | None) -> None:
    """``check_text`` unless the value is None (not given)."""
    if value is not None:
        check_text(name, value)


def check_hold_expiry(expires_at_ms: int, now_ms: int) -> None:
    """A hold's expiry: a time in Unix ms after ``now_ms``, at most MAX_HOLD_LIFETIME_MS on."""
    check_integer("hold_expires_at_ms", expires_at_ms)
    if not now_ms < expires_at_ms <= now_ms + MAX_HOLD_LIFETIME_MS:
        raise InvalidRequest(
            f"hold_expires_at_ms must be in the future, at most {MAX_HOLD_LIFETIME_MS} ms on"
        )


def check_items(
    items: Sequence[CaptureItem | CreditItem | ReversalItem],
    item_class: type[CaptureItem | CreditItem | ReversalItem],
) -> None:
    """The items of one capture, credit or reversal request: 1 to MAX_ITEMS_PER_REQUEST,
    each an ``item_class`` (what the operation takes), each hold named once, each item's
    own fields valid."""
    if not 1 <= len(items) <= MAX_ITEMS_PER_REQUEST:
        raise InvalidRequest(f"items: a request carries 1 to {MAX_ITEMS_PER_REQUEST}")
    for item in items:
        if not isinstance(item, item_class):
            raise InvalidRequest(
                f"items of this request must be {item_class.__name__}, not {type(item).__name__}"
            )
        check_text("hold_id", item.hold_id)
        check_optional_text("batch_id", item.batch_id)
        if isinstance(item, ReversalItem):
            check_bytes("original_rrpid", item.original_rrpid)
        else:
            check_amount("amount", item.amount)
            check_currency(item.currency)
    if len({item.hold_id for item in items}) != len(items):
        # Captures and credits are known by (hold, RRPID): one request, one item per hold.
        raise InvalidRequest("items may name each hold only once")


def check_page(starting_point: int, max_items: int) -> None:
    """A batch detail page request: a start from 0 to MAX_INT64 (a sequence number, which
    the merchant sends as a uint64), 1 to MAX_PAGE_ITEMS items."""
    check_integer("starting_point", starting_point)
    check_integer("max_items", max_items)
    if not 0 <= starting_point <= MAX_INT64:
        raise InvalidRequest(f"starting_point must be between 0 and {_MAX_INT64_TEXT}")
    if not 1 <= max_items <= MAX_PAGE_ITEMS:
        raise InvalidRequest(f"max_items must be 1 to {MAX_PAGE_ITEMS}")


def check_expire_limit(limit: int) -> None:
    """How many expired holds one sweep may release: 1 to EXPIRE_BATCH."""
    check_integer("limit", limit)
    if not 1 <= limit <= EXPIRE_BATCH:
        raise InvalidRequest(f"limit must be 1 to {EXPIRE_BATCH} holds")
