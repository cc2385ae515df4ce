"""No request refused as too old is built afresh, nor an order ended failed for its PI,
while an earlier sending of the same bytes may still be decided at the gateway
(``clients.merchant.renewal``); and the gateway's ledger decides a request within its
bound of the check that let it in, or never (``gateway.ledger.idempotency``), which is
what lets the merchant know when none can be.

The clocks are moved as ``tests.clocks`` does; where a test says so, the merchant's runs
ahead of the gateway's by the most ``renewal`` allows. The ledger's own clock, which
dates holds, is not moved; the one its bound reads is the gateway's.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

import pytest

from clients.errors import TransportError
from clients.merchant import renewal
from clients.merchant.records import Order, OrderState
from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger import RequestFenced, StoreUnavailable, idempotency
from setcore.freshness import FRESHNESS_WINDOW_MS, PI_MAX_AGE_MS
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.test_pi_past_bound import (
    PAST_BOUND,
    TOO_OLD,
    _bought_in_an_outage,
    _bought_unbuilt,
    _sendings,
)
from tests.clocks import _WALL_CLOCK, clocks_moved

MARGIN_MS = renewal.RENEW_MARGIN_MS
SKEW_MS = renewal.CLOCK_TOLERANCE_MS
# What the merchant's log says of an order it keeps waiting although its PI is past the
# bound: an earlier sending may still be decided.
WAITS = "it ends failed once no earlier sending of it can still be at the gateway"
# Longer than any test: a ledger call still held after this is a bug, not a slow machine.
HOLD_SECONDS = 60.0


def _clocks(monkeypatch: pytest.MonkeyPatch, gateway_ms: int, ahead_ms: int = 0) -> None:
    """Every clock ``gateway_ms`` from the wall clock; the merchant's (``clients.*``)
    ``ahead_ms`` further."""
    clocks_moved(monkeypatch, gateway_ms)
    if not ahead_ms:
        return
    ahead: Callable[[], int] = lambda: _WALL_CLOCK() + gateway_ms + ahead_ms  # noqa: E731
    for name, module in list(sys.modules.items()):
        if name.startswith("clients.") and callable(getattr(module, "now_ms", None)):
            monkeypatch.setattr(module, "now_ms", ahead)


class HeldLedger:
    """The bank's ``ledger.authorize``, its first call held until ``go``, as a request
    queued behind a stalled writer is; what each call returned or raised."""

    def __init__(self, bank: RunningBank, monkeypatch: pytest.MonkeyPatch) -> None:
        ledger = bank.bank.ledger
        self._real = ledger.authorize
        self.entered, self.go, self.ended = threading.Event(), threading.Event(), threading.Event()
        self.results: list[bytes | BaseException] = []
        monkeypatch.setattr(ledger, "authorize", self._authorize)

    def _authorize(self, **kwargs: object) -> bytes:
        first = not self.entered.is_set()
        self.entered.set()
        if first:
            with PROCESS_TURN.aside():  # as the store's callers wait for their commit
                assert self.go.wait(HOLD_SECONDS)
        try:
            answer: bytes = self._real(**kwargs)  # type: ignore[arg-type]
        except BaseException as exc:
            self.results.append(exc)
            raise
        finally:
            if first:
                self.ended.set()
        self.results.append(answer)
        return answer


def test_an_order_whose_pi_aged_past_the_bound_after_its_auth_request_was_stored_waits(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its AuthReq stored while the PI was young and sent once, its answer lost: that
    sending may have been let in. Refused later for the PI alone, the order waits until
    no such sending can still be decided, then ends failed, never built afresh."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, PI_MAX_AGE_MS - 5_000, "m-inflight-1"
    )
    try:
        with monkeypatch.context() as lost:

            def no_answer(*args: object, **kwargs: object) -> object:
                raise TransportError("gateway Authorize", "DEADLINE_EXCEEDED")

            lost.setattr(merchant.gateway, "authorize", no_answer)
            stored = merchant.authorizer.authorize(bought.xid)
        assert stored.state is OrderState.AUTHORIZING and stored.auth_request is not None
        sent = _sendings(monkeypatch, merchant)

        clocks_moved(monkeypatch, MARGIN_MS + 10_000)  # the PI past the bound by the margin
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            waiting = merchant.authorizer.authorize(bought.xid)
        assert waiting.state is OrderState.AUTHORIZING, caplog.text
        assert waiting.auth_rrpid == stored.auth_rrpid
        assert WAITS in caplog.text and PAST_BOUND in caplog.text
        assert "refused by the gateway" not in caplog.text

        clocks_moved(monkeypatch, FRESHNESS_WINDOW_MS + MARGIN_MS)  # no sending can be left
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            done = merchant.authorizer.authorize(bought.xid)
        assert done.state is OrderState.FAILED and done.error_code == TOO_OLD
        assert done.auth_rrpid == stored.auth_rrpid  # never built afresh
        assert sent == [stored.auth_request] * 2
        assert "refused by the gateway: ERROR_CODE_MESSAGE_TOO_OLD (its PI" in caplog.text
    finally:
        outage.release()


def test_no_order_ends_failed_while_an_earlier_sending_is_in_the_ledger(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The merchant's clock as far ahead as the margin allows. A first sending is let in
    while the PI is young, and held in the ledger; a second, 40 s later, is refused for
    the PI, which the merchant's clock reads past the bound by the margin: the order
    waits. The first is then applied, 40 s after its check: past the ledger's bound, so
    never decided. Once nothing can be left, the order ends failed; the ledger holds
    nothing for it."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, PI_MAX_AGE_MS - 5_000, "m-inflight-2"
    )
    held = HeldLedger(bank, monkeypatch)
    ledger = bank.bank.ledger
    try:
        _clocks(monkeypatch, 0, SKEW_MS)
        first = merchant.authorizer.authorize(bought.xid, answer_by=time.monotonic() + 1.5)
        assert held.entered.is_set() and first.state is OrderState.AUTHORIZING
        rrpid, digest = first.auth_rrpid, first.auth_request_digest
        assert rrpid is not None and digest is not None

        _clocks(monkeypatch, 40_000, SKEW_MS)
        with caplog.at_level(logging.INFO, "setpay.merchant"):
            second = merchant.authorizer.authorize(bought.xid)
        assert second.state is OrderState.AUTHORIZING, caplog.text
        assert WAITS in caplog.text

        held.go.set()
        assert held.ended.wait(HOLD_SECONDS)
        assert len(held.results) == 1 and isinstance(held.results[0], RequestFenced)
        with pytest.raises(RequestFenced):
            ledger.stored_response(rrpid, digest)

        _clocks(monkeypatch, 40_000 + FRESHNESS_WINDOW_MS + MARGIN_MS, SKEW_MS)
        done = merchant.authorizer.authorize(bought.xid)
        assert done.state is OrderState.FAILED and done.error_code == TOO_OLD
        assert done.auth_rrpid == rrpid
        with pytest.raises(RequestFenced):
            ledger.stored_response(rrpid, digest)
    finally:
        held.go.set()
        outage.release()


def test_a_refusal_is_judged_as_of_its_sending_not_of_its_coming_back(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stale AuthReq whose refused sending began only 10 s past the window, the refusal
    back a minute later: the order waits. A sending that begins past the margin builds
    it afresh."""
    merchant, outage, pending = _bought_in_an_outage(
        bank, make_merchant, make_wallet, monkeypatch, FRESHNESS_WINDOW_MS + 10_000, "m-late-1"
    )
    try:
        real = merchant.gateway.authorize

        def slow(*args: object, **kwargs: object) -> object:
            try:
                return real(*args, **kwargs)  # type: ignore[arg-type]
            finally:
                clocks_moved(monkeypatch, 60_000)  # the answer's wait

        monkeypatch.setattr(merchant.gateway, "authorize", slow)
        waiting = merchant.authorizer.authorize(pending.xid)
        assert waiting.state is OrderState.AUTHORIZING
        assert waiting.auth_rrpid == pending.auth_rrpid

        done = merchant.authorizer.authorize(pending.xid)  # sent a minute on
        assert done.state is OrderState.AUTHORIZED
        assert done.auth_rrpid != pending.auth_rrpid
    finally:
        outage.release()


def test_a_request_held_past_the_bound_is_unavailable_and_its_retry_decided(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An AuthReq held in the ledger past its bound: not decided, the gateway answers
    UNAVAILABLE, the merchant sends the same bytes again, and they are decided, once."""
    merchant, outage, bought = _bought_unbuilt(
        bank, make_merchant, make_wallet, monkeypatch, 0, "m-late-2"
    )
    held = HeldLedger(bank, monkeypatch)
    ended: list[Order] = []
    try:
        sending = threading.Thread(
            target=lambda: ended.append(merchant.authorizer.authorize(bought.xid))
        )
        sending.start()
        assert held.entered.wait(HOLD_SECONDS)
        clocks_moved(monkeypatch, idempotency.DECIDED_WITHIN_MS + 5_000)
        held.go.set()
        sending.join(HOLD_SECONDS)
        assert not sending.is_alive() and held.ended.is_set()
        assert isinstance(held.results[0], StoreUnavailable)
        (done,) = ended
        if done.state is OrderState.AUTHORIZING:  # the client's own retries ran out first
            done = merchant.authorizer.authorize(bought.xid)
        assert done.state is OrderState.AUTHORIZED
        assert [type(r) for r in held.results] == [StoreUnavailable, bytes]
        assert done.auth_rrpid is not None and done.auth_request_digest is not None
        stored = bank.bank.ledger.stored_response(done.auth_rrpid, done.auth_request_digest)
        assert stored == held.results[1]
    finally:
        held.go.set()
        outage.release()


def test_the_renewal_margin_is_the_ledgers_bound_a_commit_and_the_clocks_tolerance() -> None:
    assert renewal.LEDGER_DECIDES_WITHIN_MS == idempotency.DECIDED_WITHIN_MS
    assert renewal.RENEW_MARGIN_MS == (
        renewal.LEDGER_DECIDES_WITHIN_MS + renewal.COMMIT_ALLOWANCE_MS + renewal.CLOCK_TOLERANCE_MS
    )


@pytest.mark.parametrize(
    ("since_stored_ms", "renews"),
    [
        (FRESHNESS_WINDOW_MS + MARGIN_MS, True),
        (FRESHNESS_WINDOW_MS + MARGIN_MS - 1, False),
        (0, False),
    ],
)
def test_may_renew_counts_from_the_store_to_the_sending(since_stored_ms: int, renews: bool) -> None:
    stored_ms = 1_800_000_000_000
    assert renewal.may_renew(stored_ms, stored_ms + since_stored_ms) is renews


def test_the_margin_covers_the_ledgers_bound_a_commit_and_the_clocks_in_literal_figures() -> None:
    # Not the sum of its own parts (a tautology a shrunk part passes): the figures the
    # proof in ``renewal`` is written with, so that shrinking any of them fails here.
    assert idempotency.DECIDED_WITHIN_MS <= 20_000
    assert renewal.CLOCK_TOLERANCE_MS >= 30_000
    assert renewal.RENEW_MARGIN_MS >= 20_000 + 10_000 + 30_000
