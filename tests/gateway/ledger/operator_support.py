"""What the tests of the bank operator's ledger reads share (``reports.batch_totals``,
``books.differences``, ``setpay bank show-batch`` and ``check-books``): a batch holding
every settlement kind, with figures no two kinds share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import (
    Authorized,
    CaptureItem,
    CreditItem,
    Posted,
    PostingOutcome,
    ReversalItem,
)
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, Bank

# What ``settle`` files in its batch: kind -> (count, sum in minor units). The sums differ
# from kind to kind, so a total read under another kind's name is seen.
CAPTURES = (2, 4250)
CAPTURE_REVERSALS = (1, 1250)
CREDITS = (1, 800)
CREDIT_REVERSALS = (1, 800)
# Captures less capture reversals, less credits net of their reversals.
NET = 4250 - 1250 - 800 + 800


@dataclass(frozen=True)
class Settled:
    """The batch ``settle`` filed into, and the hold it settled."""

    batch_id: str
    hold_id: str


def _posted(outcome: object) -> Posted:
    assert isinstance(outcome, PostingOutcome), outcome
    (item,) = outcome.items
    assert isinstance(item, Posted), item
    return item


def settle(bank: Bank, merchant: str = MERCHANT, pan: str = PAN_A) -> Settled:
    """Authorize 50.00 EUR on ``pan`` at ``merchant``; capture 30.00 and 12.50, refund
    8.00, reverse the refund and the 12.50 capture: all in the merchant's open batch."""
    led = bank.ledger
    authorized = bank.authorize(pan, 5000, merchant=merchant)
    assert isinstance(authorized, Authorized), authorized
    hold = authorized.hold_id
    first = _posted(bank.call(led.capture, merchant_id=merchant,
                              items=[CaptureItem(hold, 3000, EUR)]))  # fmt: skip
    second_rrpid, credit_rrpid = bank.fresh("cap"), bank.fresh("cred")
    bank.call(led.capture, merchant_id=merchant, items=[CaptureItem(hold, 1250, EUR)],
              rrpid=second_rrpid)  # fmt: skip
    bank.call(led.credit, merchant_id=merchant, items=[CreditItem(hold, 800, EUR)],
              rrpid=credit_rrpid)  # fmt: skip
    for method, rrpid in ((led.reverse_credit, credit_rrpid), (led.reverse_capture, second_rrpid)):
        _posted(bank.call(method, merchant_id=merchant, items=[ReversalItem(hold, rrpid)]))
    return Settled(first.batch_id, hold)


def settle_bank_ledger(config: Path, env: Mapping[str, str]) -> Settled:
    """Open the ledger of the bank ``config`` names (``env``: its ``SETPAY_*`` values),
    open ``MERCHANT`` and ``PAN_A`` in it, and ``settle``; the ledger closed after."""
    ledger = open_ledger(load(config, env=env))
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        return settle(Bank(ledger))
    finally:
        ledger.close()
