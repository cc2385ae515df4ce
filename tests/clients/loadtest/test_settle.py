"""Reading the bank's page at rest (``clients.loadtest.settle``): when the wait ends, how
long it may last, and the gauge it reads."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from clients.loadtest import bank_page, settle
from clients.loadtest.bank_page import Reading
from gateway import metrics


class _Page:
    """Readings in the order a bank's page gave them, on a clock that moves by sleeping."""

    def __init__(self, *readings: Reading) -> None:
        self.readings = list(readings)
        self.now = 0.0
        self.read = 0

    def probe(self) -> Reading | None:
        self.read += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _at_rest(page: _Page, bound: float = 1.0) -> settle.Settled:
    return settle.at_rest(page.probe, bound, clock=lambda: page.now, sleep=page.sleep)


def _reading(calls: float, in_flight: float = 0.0) -> Reading:
    return Reading(worker_calls={"0": calls}, decisions=calls, in_flight=in_flight)


def test_a_quiet_bank_is_read_after_one_poll() -> None:
    page = _Page(_reading(7.0))
    assert _at_rest(page) == settle.Settled(_reading(7.0))
    assert page.read == 2 and page.now == settle.SETTLE_POLL_SECONDS


def test_a_page_at_zero_in_flight_with_counts_still_moving_is_not_at_rest() -> None:
    # Between one handler's end and the next queued call's start the gauge reads zero:
    # the counts that moved between two readings show a call ran in between.
    page = _Page(_reading(7.0), _reading(8.0), _reading(9.0, 1.0), _reading(10.0),
                 _reading(10.0))  # fmt: skip
    assert _at_rest(page) == settle.Settled(_reading(10.0))
    assert page.read == 5


def test_the_wait_is_bounded_and_says_why_it_gave_up() -> None:
    page = _Page(_reading(7.0, 2.0))
    settled = _at_rest(page, bound=0.45)
    assert settled.reading == _reading(7.0, 2.0)
    assert settled.unrest == "2 calls still in flight after 0.45 s"
    assert page.now == pytest.approx(0.5)
    moving = _Page(*(_reading(float(n)) for n in range(100)))
    assert _at_rest(moving, bound=0.5).unrest == "its counts still moving after 0.5 s"


def test_no_page_is_no_wait() -> None:
    slept: list[float] = []
    assert settle.at_rest(bank_page.no_probe, 10.0, sleep=slept.append) == settle.Settled(None)
    assert slept == []


def test_the_gateway_s_in_flight_gauge_is_read_over_every_method() -> None:
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        metrics.rpc_started("Authorize")
        metrics.rpc_started("Authorize")
        metrics.rpc_started("Capture")
        assert bank_page.read(generate_latest(registry).decode()).in_flight == 3.0
        for method in ("Authorize", "Authorize", "Capture"):
            metrics.rpc_finished("setpay.v1.PaymentGateway", method, 0.001, None)
        assert bank_page.read(generate_latest(registry).decode()).in_flight == 0.0
    finally:
        metrics.disable()
    # A bank that has handled no call yet has no gauge on its page: nothing in flight.
    assert bank_page.read("").in_flight == 0.0
