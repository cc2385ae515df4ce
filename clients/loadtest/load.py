"""The load: AuthReqs sent at a fixed arrival rate (open loop) or by a fixed number of
callers (closed loop), every request timed and its answer kept for the tally.

Open loop avoids coordinated omission: request ``i`` is due at ``t0 + i / rate`` whatever
happened to the earlier ones, it is sent asynchronously (a gRPC future), and its latency is
measured from the time it was *due*, not from when it left. A slow answer therefore never
delays the next send, and when the client itself falls behind (its CPU is shared with the
server on a small machine) the lateness shows up in the latency instead of vanishing;
``send_lag`` says by how much the client was late.

Closed loop is the classic "C callers, each waiting for its answer": it measures the
saturation throughput, and its latency is from send to answer.

Each request goes on the channel with the fewest calls in flight. SO_REUSEPORT hands each
connection to a worker at random, so a fixed channel per caller can leave one worker with
most of the connections (four connections all land on one of two workers one time in
eight; in eight runs with them pinned, one ceiling run reached 833/s against 1,513-1,798/s
in the others, one gateway run 456/s against 661-829/s); the least-busy channel drains
faster when its worker is less loaded, so the calls follow the free capacity whatever
the connections' split.

Nothing is parsed, signed or verified while the clock runs: the requests are bytes made
beforehand and the answers are kept as bytes for ``tally`` to open afterwards.
"""

from __future__ import annotations

import functools
import itertools
import math
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from clients.loadtest.channels import authorize_callable

# The first arrival is due this long after the sender starts, so that starting the
# sender threads does not make the first requests late.
START_LEAD_SECONDS = 0.05
# After the last send, answers get the per-call deadline plus this long to arrive;
# gRPC ends every call at its deadline, so waiting longer would mean a lost callback.
DRAIN_GRACE_SECONDS = 5.0
# Upper bounds that keep a typo from preparing millions of requests or threads.
MAX_RATE = 100_000.0
MAX_CONCURRENCY = 1024
MAX_SENDERS = 16

ServerCpu = Callable[[], float | None]
"""Cumulative CPU seconds of the server processes (None when they cannot be observed)."""


@dataclass(frozen=True)
class OpenLoop:
    """Arrivals at ``rate`` per second for ``duration`` seconds, from ``senders`` threads."""

    rate: float
    duration: float
    senders: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:.0f}/s")
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        if not 1 <= self.senders <= MAX_SENDERS:
            raise ValueError(f"senders must be between 1 and {MAX_SENDERS}")

    @property
    def requests(self) -> int:
        """How many requests the schedule holds."""
        return max(1, math.ceil(self.rate * self.duration))

    @property
    def label(self) -> str:
        """How the report names this shape."""
        return f"open loop {self.rate:g}/s"


@dataclass(frozen=True)
class ClosedLoop:
    """``concurrency`` callers, each sending its next request when the last is answered."""

    concurrency: int
    duration: float
    limit: int | None = None  # stop after this many requests (the warm-up)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if self.duration <= 0:
            raise ValueError("duration must be positive")

    @property
    def label(self) -> str:
        """How the report names this shape."""
        return f"closed loop x{self.concurrency}"


Shape = OpenLoop | ClosedLoop


class Sample:
    """One request: when it was due, sent and answered (``perf_counter`` seconds)."""

    __slots__ = ("due", "index", "response", "sent", "status", "took")

    def __init__(self, index: int, due: float) -> None:
        self.index = index
        self.due = due
        self.sent = math.nan
        self.took = math.nan  # seconds from due to answer (or to the deadline)
        self.status = ""  # "OK" or the gRPC status name
        self.response: bytes | None = None


@dataclass
class Recording:
    """What one run of the load observed."""

    shape: Shape
    samples: list[Sample]
    started: float
    window: float  # seconds from the first due time to the last answer
    client_cpu: float
    server_cpu: float | None
    max_in_flight: int
    send_lag_max: float
    exhausted: bool  # a closed loop ran out of prepared requests before its duration


class LeastBusy:
    """The channel with the fewest calls in flight (ties: the next in rotation)."""

    def __init__(self, channels: int) -> None:
        self._lock = threading.Lock()
        self._busy = [0] * channels
        self._next = 0

    def take(self) -> int:
        with self._lock:
            count = len(self._busy)
            start = self._next
            best = start
            for step in range(1, count):
                slot = (start + step) % count
                if self._busy[slot] < self._busy[best]:
                    best = slot
            self._busy[best] += 1
            self._next = (best + 1) % count
            return best

    def give_back(self, slot: int) -> None:
        with self._lock:
            self._busy[slot] -= 1


class _InFlight:
    """Counts calls in flight; ``wait`` returns when none is left."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.now = 0
        self.peak = 0

    def add(self) -> None:
        with self._cond:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def done(self) -> None:
        with self._cond:
            self.now -= 1
            if self.now == 0:
                self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.now == 0, timeout)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_of(error: BaseException) -> str:
    if isinstance(error, grpc.Call):
        return str(error.code().name)
    return type(error).__name__


def run(
    shape: Shape,
    channels: Sequence[grpc.Channel],
    requests: Sequence[bytes],
    *,
    timeout: float,
    reuse: bool,
    server_cpu: ServerCpu,
) -> Recording:
    """Send ``requests`` over ``channels`` in ``shape``; each call gets ``timeout`` seconds.

    ``reuse`` lets the requests be sent more than once (services without a replay store);
    otherwise each is sent at most once and a closed loop stops when they run out.
    """
    if not requests:
        raise ValueError("no prepared requests")
    calls = [authorize_callable(channel) for channel in channels]
    cpu0, server0 = _cpu_seconds(), server_cpu()
    if isinstance(shape, OpenLoop):
        if not reuse and shape.requests > len(requests):
            raise ValueError(f"{shape.requests} requests scheduled, {len(requests)} prepared")
        samples, started, in_flight, lag, exhausted = _open_loop(shape, calls, requests, timeout)
    else:
        samples, started, in_flight, lag, exhausted = _closed_loop(
            shape, calls, requests, timeout, reuse
        )
    cpu1, server1 = _cpu_seconds(), server_cpu()
    answered = [s.due + s.took for s in samples if not math.isnan(s.took)]
    window = (max(answered) - started) if answered else 0.0
    return Recording(
        shape=shape, samples=samples, started=started, window=window,
        client_cpu=cpu1 - cpu0,
        server_cpu=None if server0 is None or server1 is None else server1 - server0,
        max_in_flight=in_flight.peak, send_lag_max=lag, exhausted=exhausted,
    )  # fmt: skip


_Calls = Sequence["grpc.UnaryUnaryMultiCallable[bytes, bytes]"]


def _open_loop(
    shape: OpenLoop, calls: _Calls, requests: Sequence[bytes], timeout: float
) -> tuple[list[Sample], float, _InFlight, float, bool]:
    count = shape.requests
    started = time.perf_counter() + START_LEAD_SECONDS
    interval = 1.0 / shape.rate
    samples = [Sample(i, started + i * interval) for i in range(count)]
    in_flight = _InFlight()
    picker = LeastBusy(len(calls))
    lags = [0.0] * shape.senders

    def answered(sample: Sample, lane: int, future: grpc.Future) -> None:  # type: ignore[type-arg]
        now = time.perf_counter()
        picker.give_back(lane)
        error = future.exception()
        if error is None:
            sample.status = "OK"
            sample.response = future.result()
        else:
            sample.status = _status_of(error)
        sample.took = now - sample.due
        in_flight.done()

    def sender(slot: int) -> None:
        worst = 0.0
        for sample in samples[slot :: shape.senders]:
            wait = sample.due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sample.sent = time.perf_counter()
            worst = max(worst, sample.sent - sample.due)
            in_flight.add()
            lane = picker.take()
            future = calls[lane].future(requests[sample.index % len(requests)], timeout=timeout)
            future.add_done_callback(functools.partial(answered, sample, lane))
        lags[slot] = worst

    threads = [
        threading.Thread(target=sender, args=(slot,), name=f"bench-send-{slot}", daemon=True)
        for slot in range(shape.senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    in_flight.wait(timeout + DRAIN_GRACE_SECONDS)
    return samples, started, in_flight, max(lags), False


def _closed_loop(
    shape: ClosedLoop, calls: _Calls, requests: Sequence[bytes], timeout: float, reuse: bool
) -> tuple[list[Sample], float, _InFlight, float, bool]:
    samples: list[Sample] = []
    numbers = itertools.count()
    in_flight = _InFlight()
    picker = LeastBusy(len(calls))
    exhausted = threading.Event()
    started = time.perf_counter()
    stop_at = started + shape.duration

    def caller() -> None:
        while True:
            index = next(numbers)
            if shape.limit is not None and index >= shape.limit:
                return
            if not reuse and index >= len(requests):
                exhausted.set()
                return
            now = time.perf_counter()
            if now >= stop_at:
                return
            sample = Sample(index, now)
            sample.sent = now
            in_flight.add()
            lane = picker.take()
            try:
                sample.response = calls[lane](requests[index % len(requests)], timeout=timeout)
                sample.status = "OK"
            except grpc.RpcError as error:
                sample.status = _status_of(error)
            sample.took = time.perf_counter() - sample.due
            picker.give_back(lane)
            in_flight.done()
            samples.append(sample)

    threads = [
        threading.Thread(target=caller, name=f"bench-call-{slot}", daemon=True)
        for slot in range(shape.concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples.sort(key=lambda s: s.index)
    return samples, started, in_flight, 0.0, exhausted.is_set()
