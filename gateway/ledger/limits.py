"""What one ledger call may carry, and the checks ``Ledger`` makes before any store work.

Every check raises InvalidRequest naming the argument and its bounds, never its value:
a bad call changes nothing and leaks nothing (an amount, an id or a PAN stays out of the
message).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.ledger.errors import InvalidRequest
from gateway.ledger.settlement import CaptureItem, CreditItem, ReversalItem

# Largest amount of one operation or credit limit, in minor units: 10^12 cents is ten
# billion in major units, beyond any card, and keeps a lifetime of sums inside int64.
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


def check_amount(name: str, value: int, *, allow_zero: bool = False) -> None:
    """An integer number of minor units, 1 (or 0) to MAX_AMOUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer number of minor units")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_AMOUNT:
        raise InvalidRequest(f"{name} must be between {low} and {MAX_AMOUNT} minor units")


def check_currency(value: int) -> None:
    """An ISO 4217 numeric currency code."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999:
        raise InvalidRequest("currency must be an ISO 4217 numeric code (1 to 999)")


def check_bytes(name: str, value: bytes) -> None:
    """An id or digest: 1 to MAX_ID_BYTES bytes."""
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_ID_BYTES:
        raise InvalidRequest(f"{name} must be 1 to {MAX_ID_BYTES} bytes")


def check_text(name: str, value: str) -> None:
    """A non-empty string (an account, merchant, hold or batch id)."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")


def check_items(items: Sequence[CaptureItem | CreditItem | ReversalItem]) -> None:
    """The items of one capture, credit or reversal request: 1 to MAX_ITEMS_PER_REQUEST,
    each hold named once, each item's own fields valid."""
    if not 1 <= len(items) <= MAX_ITEMS_PER_REQUEST:
        raise InvalidRequest(f"a request carries 1 to {MAX_ITEMS_PER_REQUEST} items")
    hold_ids = [item.hold_id for item in items]
    if len(set(hold_ids)) != len(hold_ids):
        # Captures and credits are known by (hold, RRPID): one request, one item per hold.
        raise InvalidRequest("a request may name each hold only once")
    for item in items:
        check_text("hold_id", item.hold_id)
        if isinstance(item, ReversalItem):
            check_bytes("original_rrpid", item.original_rrpid)
        else:
            check_amount("amount", item.amount)
            check_currency(item.currency)


def check_page(starting_point: int, max_items: int) -> None:
    """A batch detail page request: a non-negative start, 1 to MAX_PAGE_ITEMS items."""
    if isinstance(starting_point, bool) or not isinstance(starting_point, int):
        raise InvalidRequest("starting_point must be an integer")
    if starting_point < 0 or not 1 <= max_items <= MAX_PAGE_ITEMS:
        raise InvalidRequest(f"starting_point >= 0 and 1 to {MAX_PAGE_ITEMS} items per page")


def check_expire_limit(limit: int) -> None:
    """How many expired holds one sweep may release: 1 to EXPIRE_BATCH."""
    if not 1 <= limit <= EXPIRE_BATCH:
        raise InvalidRequest(f"expire 1 to {EXPIRE_BATCH} holds at a time")
