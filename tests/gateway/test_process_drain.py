"""``RunningBank.drain`` counts the calls cut on both of its servers.

A unit test of the count alone, its servers doubles that stop in a set order: gRPC cancels
the calls of each at about the same moment, the end of the grace period, and which stop
completes first is its own business. A call cut stays in flight on its thread until its
handler returns, as with gRPC. The real servers, calls held and cut, are
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


class _Health:
    def stop(self) -> None:
        pass


class _Server:
    """A server with ``held`` calls that outlast any grace period, whose stop completes
    ``late`` seconds after the grace period's end (when gRPC has cancelled its calls)."""

    def __init__(self, held: int, late: float) -> None:
        self.in_flight = held
        self._late = late
        self._timers: list[threading.Timer] = []

    def stop(self, grace: float | None) -> threading.Event:
        stopped = threading.Event()
        timer = threading.Timer((grace or 0.0) + self._late, stopped.set)
        timer.start()
        self._timers.append(timer)
        return stopped


def _bank(gateway: _Server, ca: _Server) -> RunningBank:
    """A RunningBank of the doubles; drain touches nothing else."""
    health = _Health()
    return RunningBank(
        gateway, 0, health, ca, 0, health,  # type: ignore[arg-type]
        *(None,) * 6,  # type: ignore[arg-type]
    )  # fmt: skip


# The faster stop completes well after the grace period's end too: one completing at that
# very end raced the count's wait and, on a loaded machine, read as in time (it failed so).
FASTER_SECONDS = LATER_SECONDS / 2


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
    bank = _bank(_Server(held=2, late=gateway_late), _Server(held=1, late=ca_late))
    started = time.monotonic()
    assert bank.drain(GRACE_SECONDS) == 3
    # And it waits for both stops to complete.
    assert time.monotonic() - started >= GRACE_SECONDS + LATER_SECONDS


def test_a_server_that_stops_within_the_grace_period_cut_nothing() -> None:
    # The CA's stop completes well after the grace period's end: one that completed at
    # that very end raced the count's wait and, on a loaded machine, could read as in time.
    gateway, ca = _Server(held=0, late=-GRACE_SECONDS / 2), _Server(held=1, late=LATER_SECONDS)
    assert _bank(gateway, ca).drain(GRACE_SECONDS) == 1
