"""The load: AuthReqs sent at a fixed arrival rate (open loop) or by a fixed number of
callers (closed loop), every request timed and its answer kept for the tally.

Open loop avoids coordinated omission: request ``i`` is due at ``t0 + i / rate`` whatever
happened to the earlier ones, it is sent without waiting for any answer, and its latency
is measured from the time it was *due*, not from when it left. A slow answer therefore
never delays the next send, and when the client itself falls behind (its CPU is shared
with the server on a small machine) the lateness shows up in the latency instead of
vanishing; ``send_lag`` says by how much the client was late.

Closed loop is the classic "C callers, each waiting for its answer": it measures the
saturation throughput, and its latency is from send to answer.

Both run on one asyncio event loop with ``grpc.aio`` channels. Measured side by side
against the echo service (2 workers, 8 channels, TLS, three alternating rounds), a
thread per caller with the sync API cost the bench 274 us of CPU per call in a closed
loop of 32 and 526 us in an open loop at 1,500/s; the event loop costs 130 and 346 us.
The bench shares the machine with what it measures, so what it saves goes to the server.
The loop's timers have millisecond resolution, so an open-loop send may leave up to about
a millisecond after it was due; that lateness is inside the latencies and in ``send_lag``.

Each request goes on the channel with the fewest calls in flight. SO_REUSEPORT hands each
connection to a worker at random, so a fixed channel per caller can leave one worker with
most of the connections (four connections all land on one of two workers one time in
eight; in eight runs with them pinned, one ceiling run reached 833/s against 1,513-1,798/s
in the others, one gateway run 456/s against 661-829/s); the least-busy channel drains
faster when its worker is less loaded, so the calls follow the free capacity whatever
the connections' split, as long as every worker has one. For a server the bench started,
``spread`` sees which worker accepted each connection, and the channels are dialled
again, before the clock starts, while a worker has none. Below saturation (an open loop)
most channels are idle, ties go round the channels, and each worker gets calls in
proportion to its connections (a 7 / 1 split put 79 % of a ceiling's CPU on one worker).
Sending each call to the worker with the fewest in flight evened that out, but in five
alternating pairs it left the open-loop p99 no better and the ceiling's closed loop
slower (docs/BENCHMARKS.md, seventeenth round), so the channels are what is balanced.

Nothing is parsed, signed or verified while the clock runs: the requests are bytes made
beforehand and the answers are kept as bytes for ``tally`` to open afterwards.

Throughput is answers per second over the step's measured interval (``Recording.measured``):
from the clock's start to the step's end, and only the answers that arrived by then. The
calls still running at the end are the drain, not the step: measured to the last call's
end instead, one call stuck until its deadline stretched a 10 s closed loop to 15 s and
reported two thirds of the rate the callers kept up. A closed loop that ran out of
prepared requests (or the warm-up, which stops at its bound) ends, if that came before
the step's end, at the later of its last send and its last answer's end (a call whose
status is OK: one that ended at its deadline, was given up on, or was refused, say
UNAVAILABLE after a wait for a turn, does not extend it), and every answer counts.
Measured to its last call's end instead, one call stuck until its 5 s deadline turned
331/s into 55/s (300 requests, 32 callers), and so did one refused at 4.9 s; ended when
its first
caller found nothing left to send (the first call to end after the last send), it left
out the answers still in flight then, about one latency's worth: with no more requests
than callers, one answer over one latency (32 requests to 32 callers answering in
15-25 ms read 63/s; they were answered at about 1,200/s). A stalled end neither
stretches the interval nor is hidden: its timeouts and errors are counted, and the run
is not clean. A loop of a few requests per caller is still measured mostly over its drain, when
fewer and fewer callers are busy, which ``report`` doubts (``POOL_PER_CALLER``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from clients.loadtest.channels import GatewayAccess, authorize_callable, open_channels
from clients.loadtest.spread import WorkerSpread

# The first arrival is due this long after the clock starts, so that the first requests
# are not late for the loop's own start.
START_LEAD_SECONDS = 0.05
# After the last send, answers get the per-call deadline plus this long to arrive;
# gRPC ends every call at its deadline, so waiting longer would mean a lost answer.
DRAIN_GRACE_SECONDS = 5.0
# Upper bounds that keep a typo from preparing millions of requests or callers.
MAX_RATE = 100_000.0
MAX_CONCURRENCY = 1024
# Dialling again while a worker has no connection: with 8 channels on two workers a dial
# misses a worker one time in 128, so three more dials all miss about once in 2.7e8.
MAX_REDIALS = 3
# How long a dial's connections get to be accepted by the workers, which hold them from
# then on: a connection is ready for the client as soon as the kernel has queued it.
ACCEPT_WAIT_SECONDS = 1.0
ACCEPT_POLL_SECONDS = 0.01
# The status of a call that reached its deadline unanswered (gRPC's name for it).
TIMEOUT_STATUS = grpc.StatusCode.DEADLINE_EXCEEDED.name

ServerCpu = Callable[[], float | None]
"""Cumulative CPU seconds of the server processes (None when they cannot be observed)."""


def scheduled(rate: float, duration: float) -> int:
    """The arrivals due within ``duration`` seconds at ``rate`` per second (at least one)."""
    # Rounded first: 8.3 * 30 comes out just above 249 in binary floating point, and one
    # more arrival, due when the duration ends, would be scheduled.
    return max(1, math.ceil(round(rate * duration, 9)))


@dataclass(frozen=True)
class OpenLoop:
    """Arrivals at ``rate`` per second for ``duration`` seconds."""

    rate: float
    duration: float

    def __post_init__(self) -> None:
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:.0f}/s")
        if self.duration <= 0:
            raise ValueError("duration must be positive")

    @property
    def requests(self) -> int:
        """How many requests the schedule holds."""
        return scheduled(self.rate, self.duration)

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
        self.took = math.nan  # seconds from due to answer (or deadline, or giving up)
        self.status = ""  # "OK" or the gRPC status name
        self.response: bytes | None = None


@dataclass
class Recording:
    """What one run of the load observed."""

    shape: Shape
    samples: list[Sample]
    started: float
    # Seconds from the first due time to the last answer (or giving up): the clocked run,
    # drain included (throughput is over ``measured``).
    window: float
    client_cpu: float
    server_cpu: float | None
    max_in_flight: int
    send_lag_max: float
    exhausted: bool  # a closed loop ran out of prepared requests before its duration
    # The run's connections accepted by each worker (a server the bench started), and
    # how many times the channels were dialled again because a worker had none.
    connections: tuple[int, ...] | None = None
    redials: int = 0
    # The calls the sender started, counted apart from ``samples`` so that the tally can
    # check one against the other (None: not counted).
    calls_started: int | None = None

    @property
    def measured(self) -> float:
        """Seconds from ``started`` to the end of the interval throughput is over (the
        module docstring): the step's duration, or, for a closed loop that ran out of
        requests or reached its bound, its end if that came first."""
        shape = self.shape
        if isinstance(shape, OpenLoop) or not (self.exhausted or shape.limit is not None):
            return shape.duration
        return min(shape.duration, self._ran_out() - self.started)

    def _ran_out(self) -> float:
        """When a closed loop that ran out was done: the later of its last send and its
        last answer's end. A call that ended at its deadline, was given up on or was
        refused (an error status, which can come near the deadline: a worker's UNAVAILABLE
        after waiting for a turn) does not extend it: a stalled end would stretch the
        interval and hide the rate the callers kept up while they had requests; timeouts
        and errors are counted anyway, and make the step not clean."""
        if not self.samples:
            return self.started
        last_sent = max(s.due for s in self.samples)
        answers = [s.due + s.took for s in self.samples if _answered(s)]
        return max([last_sent, *answers])


def _answered(sample: Sample) -> bool:
    """The call ended with an answer the service gave (gRPC status OK), not at its
    deadline, given up on (a cancelled call keeps no status) or refused."""
    return sample.status == "OK" and not math.isnan(sample.took)


class LeastBusy:
    """The channel with the fewest calls in flight (ties: the next in rotation).

    Used from the event loop's thread only, so it needs no lock."""

    def __init__(self, channels: int) -> None:
        self._busy = [0] * channels
        self._next = 0

    def take(self) -> int:
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
        self._busy[slot] -= 1


_Calls = Sequence["grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]"]


class _Sender:
    """Sends one request on the least busy channel and records its answer in its sample."""

    def __init__(self, calls: _Calls, requests: Sequence[bytes], timeout: float):
        self._calls = calls
        self._requests = requests
        self.timeout = timeout  # each call's deadline, seconds
        self._picker = LeastBusy(len(calls))
        self.in_flight = 0
        self.peak = 0
        self.started = 0

    async def send(self, sample: Sample) -> None:
        self.started += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        lane = self._picker.take()
        request = self._requests[sample.index % len(self._requests)]
        sample.sent = time.perf_counter()
        try:
            sample.response = await self._calls[lane](request, timeout=self.timeout)
            sample.status = "OK"
        except grpc.aio.AioRpcError as error:
            sample.status = str(error.code().name)
        finally:
            # Cancelled (given up on after its deadline and the grace period), a call
            # keeps no status, and the tally counts it as never answered; it keeps the
            # time it waited, which counts in the latency like a timeout's.
            sample.took = time.perf_counter() - sample.due
            self._picker.give_back(lane)
            self.in_flight -= 1


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(
    shape: Shape,
    access: GatewayAccess,
    requests: Sequence[bytes],
    *,
    channels: int,
    timeout: float,
    reuse: bool,
    server_cpu: ServerCpu,
    spread: WorkerSpread | None = None,
) -> Recording:
    """Send ``requests`` to ``access`` over ``channels`` connections in ``shape``; each
    call gets ``timeout`` seconds.

    ``reuse`` lets the requests be sent more than once (services without a replay store);
    otherwise each is sent at most once and a closed loop stops when they run out.
    ``spread``: the server's workers, when the bench can see them (it started the server).
    """
    if not requests:
        raise ValueError("no prepared requests")
    if isinstance(shape, OpenLoop) and not reuse and shape.requests > len(requests):
        raise ValueError(f"{shape.requests} requests scheduled, {len(requests)} prepared")
    return asyncio.run(_run(shape, access, requests, channels, timeout, reuse, server_cpu, spread))


async def _accepted(spread: WorkerSpread, client_ports: frozenset[int]) -> tuple[int, ...] | None:
    """Each worker's part of ``client_ports``, once the workers have accepted them all
    (or after ACCEPT_WAIT_SECONDS, as far as they have)."""
    give_up = time.monotonic() + ACCEPT_WAIT_SECONDS
    while True:
        reached = spread.reached(client_ports)
        if reached is None or sum(reached) >= len(client_ports) or time.monotonic() >= give_up:
            return reached
        await asyncio.sleep(ACCEPT_POLL_SECONDS)


async def _connect(
    access: GatewayAccess, count: int, spread: WorkerSpread | None
) -> tuple[list[grpc.aio.Channel], tuple[int, ...] | None, int]:
    """``count`` connected channels, dialled again (up to MAX_REDIALS times) while a
    worker of the server has none of them; with the connections each worker accepted
    and the number of re-dials."""
    if spread is None:
        return await open_channels(access, count), None, 0
    redials = 0
    while True:
        before = spread.client_ports()
        channels = await open_channels(access, count)
        reached = await _accepted(spread, spread.client_ports() - before)
        # Fewer channels than workers cannot reach them all: that is the user's choice.
        if reached is None or all(reached) or count < len(reached) or redials == MAX_REDIALS:
            return channels, reached, redials
        for channel in channels:
            await channel.close(grace=None)
        redials += 1


async def _run(
    shape: Shape,
    access: GatewayAccess,
    requests: Sequence[bytes],
    channel_count: int,
    timeout: float,
    reuse: bool,
    server_cpu: ServerCpu,
    spread: WorkerSpread | None,
) -> Recording:
    channels, reached, redials = await _connect(access, channel_count, spread)
    try:
        sender = _Sender([authorize_callable(c) for c in channels], requests, timeout)
        cpu0, server0 = _cpu_seconds(), server_cpu()
        if isinstance(shape, OpenLoop):
            samples, started, lag = await _open_loop(shape, sender)
            exhausted = False
        else:
            samples, started, exhausted = await _closed_loop(shape, sender, len(requests), reuse)
            lag = 0.0
        cpu1, server1 = _cpu_seconds(), server_cpu()
    finally:
        for channel in channels:
            await channel.close(grace=None)
    answered = [s.due + s.took for s in samples if not math.isnan(s.took)]
    window = (max(answered) - started) if answered else 0.0
    return Recording(
        shape=shape, samples=samples, started=started, window=window,
        client_cpu=cpu1 - cpu0,
        server_cpu=None if server0 is None or server1 is None else server1 - server0,
        max_in_flight=sender.peak, send_lag_max=lag, exhausted=exhausted,
        connections=reached, redials=redials, calls_started=sender.started,
    )  # fmt: skip


async def _open_loop(shape: OpenLoop, sender: _Sender) -> tuple[list[Sample], float, float]:
    started = time.perf_counter() + START_LEAD_SECONDS
    interval = 1.0 / shape.rate
    # Each request's record is made as its turn comes: made all beforehand, a long
    # schedule's records (90 ms for 200,000) outlast START_LEAD_SECONDS, and the first
    # requests would leave late by the difference.
    samples: list[Sample] = []
    sends: set[asyncio.Task[None]] = set()
    for index in range(shape.requests):
        sample = Sample(index, started + index * interval)
        samples.append(sample)
        wait = sample.due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        task = asyncio.create_task(sender.send(sample))
        sends.add(task)  # the loop keeps only weak references to its tasks
        task.add_done_callback(sends.discard)
    if sends:
        # Every call ends at its deadline: what still runs after the grace period has
        # lost its answer.
        _, lost = await asyncio.wait(sends, timeout=sender.timeout + DRAIN_GRACE_SECONDS)
        for task in lost:
            task.cancel()
        await asyncio.gather(*lost, return_exceptions=True)
    sent = [s.sent - s.due for s in samples if not math.isnan(s.sent)]
    return samples, started, max(sent, default=0.0)


async def _closed_loop(
    shape: ClosedLoop, sender: _Sender, prepared: int, reuse: bool
) -> tuple[list[Sample], float, bool]:
    samples: list[Sample] = []
    numbers = itertools.count()
    exhausted = False
    started = time.perf_counter()
    stop_at = started + shape.duration

    async def caller() -> None:
        nonlocal exhausted
        for index in numbers:
            # The time first: a caller whose call ended after the step's end has not run
            # out of requests, whatever index it took next (the step lasted its length).
            now = time.perf_counter()
            if now >= stop_at:
                return
            if shape.limit is not None and index >= shape.limit:
                return
            if not reuse and index >= prepared:
                exhausted = True
                return
            sample = Sample(index, now)
            samples.append(sample)
            await sender.send(sample)

    await asyncio.gather(*(caller() for _ in range(shape.concurrency)))
    samples.sort(key=lambda s: s.index)
    return samples, started, exhausted
