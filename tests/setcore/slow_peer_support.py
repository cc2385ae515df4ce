"""Watch streams for ``setcore.watch_sends.Senders`` alone, whose peer (a connection, as
gRPC's ``peer()`` names it) takes each status when the test lets it, after a set time,
or never, and whose call's cancel ends the send under way by raising, as grpcio's does."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Sequence
from typing import cast

import grpc
from grpc_health.v1 import health_pb2

from setcore.watch_sends import Senders
from setcore.watch_stream import WatchStream
from tests.setcore.zero_window_support import WAIT_SECONDS

SERVING = health_pb2.HealthCheckResponse.SERVING


class Call:
    """One Watch stream's call and peer, on ``connection``: each send is taken once the
    test lets it (``let``), after ``takes`` seconds if set, or never (for as long as a
    test waits for anything); a cancel ends the send under way (it raises ``cancel_lag``
    seconds later). Records, in ``order`` too, when each send began, what was taken and
    when, and when the call was cancelled."""

    def __init__(
        self,
        connection: str,
        order: list[Call],
        takes: float | None = None,
        cancel_lag: float = 0.0,
    ) -> None:
        self.connection = connection
        self.name = f"{connection} {next(_NUMBERS)}"
        self.order = order
        self.takes = takes
        self.cancel_lag = cancel_lag
        self.gate = threading.Event()
        self.cancelled = threading.Event()
        self.cancelled_at = math.inf  # never
        self.began: list[float] = []
        self.told: list[int | None] = []
        self.done: list[float] = []  # when each send was taken

    def __repr__(self) -> str:
        return self.name

    def peer(self) -> str:
        return self.connection

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()
        self.cancelled.set()

    def let(self) -> None:
        self.gate.set()

    def send(self, response: object) -> None:
        began = time.monotonic()
        self.began.append(began)
        self.order.append(self)
        # Never: for as long as a test waits for anything.
        takes = WAIT_SECONDS if self.takes is None else self.takes
        while not self.cancelled.is_set() and not self.gate.is_set():
            if time.monotonic() - began >= takes:
                break
            self.cancelled.wait(0.005)
        if self.cancelled.is_set():
            time.sleep(self.cancel_lag)
            raise RuntimeError("the call was cancelled")
        self.done.append(time.monotonic())
        if isinstance(response, health_pb2.HealthCheckResponse):
            self.told.append(response.status)
        else:
            self.told.append(None)  # the end

    def stream(self) -> WatchStream:
        """The call's stream, to be told SERVING first."""
        return WatchStream(self.send, cast(grpc.ServicerContext, self), SERVING, 1, False)


_NUMBERS = itertools.count()


class Gauge:
    """Sends under way at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.under_way = 0
        self.most = 0

    def change(self, by: int) -> None:
        with self.lock:
            self.under_way += by
            self.most = max(self.most, self.under_way)


class Counted(Call):
    """A call whose sends under way are counted on ``gauge``."""

    def __init__(
        self, connection: str, order: list[Call], gauge: Gauge, takes: float | None = None
    ) -> None:
        super().__init__(connection, order, takes)
        self.gauge = gauge

    def send(self, response: object) -> None:
        self.gauge.change(1)
        try:
            super().send(response)
        finally:
            self.gauge.change(-1)


def over(calls: Sequence[Call]) -> bool:
    """Whether every call's sends are over: each told a status or cancelled."""
    return all(call.told or call.cancelled.is_set() for call in calls)


def books_emptied(senders: Senders) -> None:
    """Wait for ``senders``' places to be counted free (at most ``WAIT_SECONDS``): a stream
    goes idle under its own lock, and its sender counts its send over
    (``Senders._sent``) only at its next hold of the senders' lock, so not at once."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        with senders._lock:
            books = (dict(senders._per_peer), dict(senders._placeless_per_peer))
        if books == ({}, {}):
            return
        assert time.monotonic() < deadline, f"places still counted taken: {books}"
        time.sleep(0.005)
