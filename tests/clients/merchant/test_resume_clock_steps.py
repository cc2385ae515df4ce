"""A serving merchant's rounds after its wall clock steps back (NTP, an RTC mended).

The rounds pick waiting requests by two times the merchant's wall clock wrote: when each
was stored (only those stored a while ago, ``runtime.RESUME_AFTER_MS``) and when its
back-off ends (``outcome.next_try``). A clock stepped back two hours made both look two
hours away, and the requests waited that long (nothing was lost: a start sends them).
A time later than the clock could have written is now read as one written before the
step: such a request goes in the next round.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from clients.merchant import outcome, runtime, stored_requests
from clients.merchant.records import OperationState
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.scripted_requests_support import Scripted, operation
from tests.clients.merchant.test_settlement_recovery import _capture_in_outage
from tests.clocks import clocks_moved

NOW_MS = 1_800_000_000_000
TWO_HOURS_MS = 2 * 3600 * 1000


def test_a_request_stored_before_the_clock_stepped_back_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored "two hours from now": the clock has stepped back since, and it goes; one
    stored a moment ago still waits for the command that may be sending it."""
    monkeypatch.setattr(stored_requests, "now_ms", lambda: NOW_MS)
    ahead = dataclasses.replace(operation("ahead"), created_ms=NOW_MS + TWO_HOURS_MS)
    just = dataclasses.replace(operation("just"), created_ms=NOW_MS - 1_000)
    scripted = Scripted([ahead, just])
    scripted.resume(stored_before_ms=NOW_MS - runtime.RESUME_AFTER_MS)
    assert scripted.sent == ["ahead"]


def test_a_back_off_ending_past_the_longest_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a round has asked every request, only those due go: one whose back-off ends
    further away than the longest back-off was put off by a clock since stepped back,
    and goes; one put off by the longest wait just now still waits it out."""
    monkeypatch.setattr(stored_requests, "now_ms", lambda: NOW_MS)
    scripted = Scripted([])
    scripted.resume(due_at_ms=NOW_MS)  # a round that asked them all
    longest = NOW_MS + outcome.UNVERIFIED_MAX_WAIT_MS
    scripted.waiting = [
        operation("stepped", retry_after_ms=longest + TWO_HOURS_MS),
        operation("longest", retry_after_ms=longest),
        operation("due", retry_after_ms=NOW_MS),
    ]
    scripted.resume(due_at_ms=NOW_MS)
    assert scripted.sent == ["stepped", "due"]
    scripted.sent.clear()
    # Sent once, it is put off from the clock as it reads now, and waits as any other.
    scripted.waiting = [operation("stepped", retry_after_ms=longest)]
    scripted.resume(due_at_ms=NOW_MS)
    assert scripted.sent == []


def test_serving_rounds_send_a_capture_stored_before_the_clock_stepped_back(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A capture sent in an outage; the host's clock (the gateway's too) then steps back
    three minutes, within the gateway's window. The serving rounds send it as soon as
    the gateway is back, not once the clock has caught up and the minute passed."""
    monkeypatch.setattr(runtime, "RESUME_SECONDS", 0.05)
    monkeypatch.setattr(runtime, "RESUME_AFTER_MS", 60_000)  # the shipped value
    with _capture_in_outage(bank, make_merchant, make_wallet, "m-stepped-back") as (
        merchant, xid, outage,
    ):  # fmt: skip
        clocks_moved(monkeypatch, -3 * 60 * 1000)
        outage.end(merchant)
        give_up = time.monotonic() + 8
        while merchant.store.operations(xid)[0].state is OperationState.SENT:
            assert time.monotonic() < give_up, "capture still waiting: the step back holds it"
            time.sleep(0.05)
        (capture,) = merchant.store.operations(xid)
        assert capture.state is OperationState.SUCCEEDED
