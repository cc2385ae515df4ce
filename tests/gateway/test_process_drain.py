"""``RunningBank.drain`` counts the calls cut on both of its servers.

A unit test of the count alone, its servers doubles of gRPC's stop as drain sees it: a
stop with a grace cancels the server's calls at the grace end (at once without one), and
completes ``late`` seconds after that cancel; a call cut stays in flight on its thread
until its handler returns. The real servers, calls held and cut, are
``test_workers_stop``'s.
"""

from __future__ import annotations

import threading
import time

import pytest

from gateway.process import RunningBank

GRACE_SECONDS = 0.2
# How much later than the grace period's end the slower server's stop completes: far more
# than the faster one's wait for what is left of the grace period.
LATER_SECONDS = 0.5
# The faster stop completes well after the grace period's end too.
FASTER_SECONDS = LATER_SECONDS / 2
# How close to the cancel a look counts as after it: gRPC's timer thread and drain's wait
# end at about the same instant, and which runs first is the scheduler's business. Far
# more than either is late on a loaded machine, far less than the grace period.
SAME_INSTANT_SECONDS = GRACE_SECONDS / 4


class _Health:
    def stop(self) -> None:
        pass


class _Server:
    """A server with ``held`` calls that outlast any grace period (see the module
    docstring); ``cut_in_flight`` is what was in flight when its calls were cancelled."""

    def __init__(self, held: int, late: float, done_after: float | None = None) -> None:
        self.in_flight = held
        self.cut_in_flight: int | None = None
        self._late = late
        self._done_after = done_after  # when the held calls end by themselves, if they do
        self._began: float | None = None
        self._cancel_at: float | None = None
        self.stopped = _Stopped(self)  # set once a wait saw the stop complete

    def stop(self, grace: float | None) -> threading.Event:
        now = time.monotonic()
        self._began = self._began or now
        cancel_at = now + (grace or 0.0)
        if self._cancel_at is None or cancel_at < self._cancel_at:
            self._cancel_at = cancel_at
        return self.stopped

    def stopped_at(self, now: float) -> bool:
        """Whether the stop has completed by ``now`` (its calls cancelled, if so)."""
        assert self._cancel_at is not None and self._began is not None
        done = self._done_after is not None and now >= self._began + self._done_after
        if done and self.cut_in_flight is None:
            self.in_flight = 0  # ended before any cancel: a stop completes when its calls do
            return True
        if now + SAME_INSTANT_SECONDS >= self._cancel_at and self.cut_in_flight is None:
            self.cut_in_flight = self.in_flight
        return now + SAME_INSTANT_SECONDS >= self._cancel_at + self._late


class _Stopped(threading.Event):
    """The event gRPC's stop returns, set once the double's stop has completed."""

    def __init__(self, server: _Server) -> None:
        super().__init__()
        self._server = server

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._server.stopped_at(time.monotonic()):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        self.set()
        return True


def _bank(gateway: _Server, ca: _Server) -> RunningBank:
    """A RunningBank of the doubles; drain touches nothing else."""
    health = _Health()
    return RunningBank(
        gateway, 0, health, ca, 0, health,  # type: ignore[arg-type]
        *(None,) * 6,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("gateway_late", "ca_late"),
    [(LATER_SECONDS, FASTER_SECONDS), (FASTER_SECONDS, LATER_SECONDS)],
    ids=["gw", "ca"],
)
def test_calls_cut_on_both_servers_are_counted_whichever_stops_last(
    gateway_late: float, ca_late: float
) -> None:
    """Before, the count of the second server was taken only once the first one had
    stopped: when that was after the second one had stopped too, its cut calls read as
    finished (here the gateway's 2 alone, of 3, when its stop was the slower one)."""
    gateway, ca = _Server(held=2, late=gateway_late), _Server(held=1, late=ca_late)
    started = time.monotonic()
    assert _bank(gateway, ca).drain(GRACE_SECONDS) == 3
    took = time.monotonic() - started
    # It waits for both stops to complete, the slower one's too, whichever it is (a drain
    # that waited for the gateway's alone returned with the CA's still stopping).
    assert gateway.stopped.is_set() and ca.stopped.is_set()
    assert took >= GRACE_SECONDS + LATER_SECONDS - SAME_INSTANT_SECONDS, took
    assert (gateway.cut_in_flight, ca.cut_in_flight) == (2, 1)


def test_calls_cut_by_a_stop_that_completes_at_the_grace_end_are_counted() -> None:
    """gRPC's own cut at the grace end completes its stop within milliseconds, while the
    handlers it cancelled still run: drain, finding both stops complete when it looked,
    counted none of the calls they cut (on a real bank, 2 of 100 stops counted 1 of 2, and
    the worker exited 0, not CALLS_CUT). Here both stops complete at that very instant."""
    gateway, ca = _Server(held=2, late=0.0), _Server(held=1, late=0.0)
    assert _bank(gateway, ca).drain(GRACE_SECONDS) == 3
    assert (gateway.cut_in_flight, ca.cut_in_flight) == (2, 1)


def test_no_grace_cuts_what_is_in_flight_at_once() -> None:
    gateway, ca = _Server(held=1, late=0.0), _Server(held=0, late=0.0)
    started = time.monotonic()
    assert _bank(gateway, ca).drain(None) == 1
    assert time.monotonic() - started < GRACE_SECONDS


def test_a_server_that_stops_within_the_grace_period_cut_nothing() -> None:
    # The gateway's calls end half way through the grace period, and its stop with them.
    gateway = _Server(held=2, late=0.0, done_after=GRACE_SECONDS / 2)
    ca = _Server(held=1, late=LATER_SECONDS)
    assert _bank(gateway, ca).drain(GRACE_SECONDS) == 1
    assert gateway.cut_in_flight is None  # never cancelled
