"""The load's clock against a stand-in network whose answers come when a test says.

The real echo service (``test_open_loop``) shows the open loop against a real server; here
the calls are coroutines of the test's own, so the schedule, the lateness of the bench
itself and the end of a run can be driven exactly: an answer that takes a set time, a
bench that stalls its own event loop, a call that never returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from clients.loadtest import load
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.load import ClosedLoop, OpenLoop, Recording, Sample
from clients.loadtest.tally import NO_ANSWER, echo_judge, tally

Answer = Callable[[bytes], Awaitable[bytes]]
NOWHERE = GatewayAccess("stand-in:0", None)
# Seconds each answer takes in the open loop's test: a send that waited for one would be
# at least this late, far beyond what a loaded machine delays a send that did not.
ANSWER = 1.0


class _Channel:
    """A channel whose every call is ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def close(self, grace: float | None = None) -> None:
        return None


def _network(monkeypatch: pytest.MonkeyPatch, answer: Answer) -> None:
    async def open_channels(access: GatewayAccess, count: int) -> list[_Channel]:
        return [_Channel(answer) for _ in range(count)]

    def authorize_callable(channel: _Channel) -> Callable[..., Awaitable[bytes]]:
        async def call(request: bytes, *, timeout: float) -> bytes:
            return await channel.answer(request)

        return call

    monkeypatch.setattr(load, "open_channels", open_channels)
    monkeypatch.setattr(load, "authorize_callable", authorize_callable)


def _after(seconds: float) -> Answer:
    async def answer(request: bytes) -> bytes:
        await asyncio.sleep(seconds)
        return b"answered"

    return answer


def _run(shape: OpenLoop | ClosedLoop, *, timeout: float = 5.0) -> Recording:
    return load.run(
        shape, NOWHERE, [b"request"], channels=2, timeout=timeout, reuse=True,
        server_cpu=lambda: None,
    )  # fmt: skip


def test_open_loop_sends_on_schedule_however_slow_the_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _network(monkeypatch, _after(ANSWER))
    recording = _run(OpenLoop(100.0, 0.3))
    samples = recording.samples
    assert len(samples) == 30
    # Each request left when it was due, none waiting for an answer: all were in flight.
    assert recording.max_in_flight == 30
    # None waited for an answer: each would then have left at least ANSWER late.
    assert max(s.sent - s.due for s in samples) < ANSWER
    assert [s.due - samples[0].due for s in samples] == pytest.approx(
        [i / 100.0 for i in range(30)]
    )
    # Latency is from the due time: at least the answer's time.
    assert all(s.took >= ANSWER for s in samples)


def test_a_bench_that_falls_behind_says_so_and_the_latency_carries_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first answer stalls the bench's own event loop for STALL (as a busy client
    # would): the requests due meanwhile leave late, and their latency must include it.
    stall = 0.3
    stalled = False

    async def answer(request: bytes) -> bytes:
        nonlocal stalled
        if not stalled:
            stalled = True
            time.sleep(stall)  # blocks the loop on purpose
        return b"answered"

    _network(monkeypatch, answer)
    recording = _run(OpenLoop(100.0, 0.5))
    assert recording.send_lag_max >= stall * 0.8
    late = [s for s in recording.samples if s.sent - s.due > 0.1]
    assert len(late) >= 10
    # Measured from the schedule: the latency is at least the lateness.
    assert all(s.took >= s.sent - s.due for s in recording.samples)
    counted = tally("echo", recording, echo_judge)
    assert counted.send_lag_max_ms >= stall * 800
    assert counted.latency is not None and counted.latency.max >= stall * 800


def test_a_schedule_long_to_build_does_not_make_the_first_sends_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Building every request's record before the first was due made the first ones late
    # by the time it took (about 90 ms for 200,000 records here, more than the lead the
    # clock allows), and that lateness was charged to the server as latency.
    # The records here take 5 ms each (50 of them 0.25 s, past the 0.05 s lead). Whether
    # the first request left before the last record was made is an order, not a time:
    # a bound on its lateness would need the records made in turn to keep up with their
    # 10 ms interval, which they do not on a loaded machine either way.
    build = 0.005
    built: list[float] = []

    class SlowSample(Sample):
        __slots__ = ()

        def __init__(self, index: int, due: float) -> None:
            time.sleep(build)
            built.append(time.perf_counter())
            super().__init__(index, due)

    monkeypatch.setattr(load, "Sample", SlowSample)
    _network(monkeypatch, _after(0.0))
    recording = _run(OpenLoop(100.0, 0.5))
    assert len(recording.samples) == len(built) == 50
    assert recording.samples[0].sent < built[-1]


def test_closed_loop_keeps_its_callers_busy_and_waits_for_the_last_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _network(monkeypatch, _after(0.05))
    started = time.perf_counter()
    recording = _run(ClosedLoop(4, 0.3))
    ended = time.perf_counter()
    samples = recording.samples
    assert recording.max_in_flight == 4
    # Every request sent was answered, those in flight at the end of the duration too.
    assert all(s.status == "OK" for s in samples)
    # None sent after the end of the duration, counted from the loop's own start.
    assert max(s.due for s in samples) <= recording.started + 0.3
    assert recording.started >= started
    assert ended - started >= 0.3
    # About 4 callers x 0.3 s / 0.05 s each; latency from each request's send.
    assert 12 <= len(samples) <= 28
    assert all(s.took >= 0.04 for s in samples)
    # Four callers, one call each at a time: their latencies fit four times the run's
    # wall time (measured from the start of the run instead, they would not).
    assert sum(s.took for s in samples) <= 4 * (ended - started)
    assert [s.index for s in samples] == list(range(len(samples)))


def test_a_call_that_never_returns_is_counted_with_the_time_it_waited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A call still running after its deadline and the grace period lost its answer: it
    # counts as an error, and its wait counts in the latency like a timeout's.
    async def never(request: bytes) -> bytes:
        await asyncio.Event().wait()
        return b"never"

    _network(monkeypatch, never)
    monkeypatch.setattr(load, "DRAIN_GRACE_SECONDS", 0.2 - 1.0)  # waits 0.2 s in all
    recording = _run(OpenLoop(50.0, 0.1), timeout=1.0)
    counted = tally("echo", recording, echo_judge)
    assert counted.sent == 5 and counted.accounted
    assert counted.grpc_errors == {NO_ANSWER: 5}
    assert counted.latency is not None
    assert counted.latency.max >= 200.0
    assert recording.window >= 0.2


@pytest.mark.parametrize(
    ("rate", "duration", "scheduled"),
    [(8.3, 30.0, 249), (16.6, 60.0, 996), (25.0, 2.0, 50), (0.5, 1.0, 1), (1.1, 10.0, 11),
     (2.5, 1.0, 3)],
)  # fmt: skip
def test_an_open_loop_schedules_the_arrivals_inside_its_duration(
    rate: float, duration: float, scheduled: int
) -> None:
    # 8.3 * 30 comes out just above 249 in floating point: one more request, due at
    # the very end of the duration, was scheduled.
    shape = OpenLoop(rate, duration)
    assert shape.requests == scheduled
    assert (shape.requests - 1) / rate < duration  # the last one is due inside it


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_is_read_around_the_load_and_not_the_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Dialling (TLS handshakes) is done before the clock starts: neither the bench's CPU
    # nor the server's is read over it, and both are read once the last answer is in.
    answers: list[float] = []

    async def answer(request: bytes) -> bytes:
        await asyncio.sleep(0.01)
        answers.append(time.perf_counter())
        return b"answered"

    _network(monkeypatch, answer)

    async def slow_dial(access: GatewayAccess, count: int) -> list[_Channel]:
        _burn(0.4)
        reads.append(("dialled", time.perf_counter()))
        return [_Channel(answer) for _ in range(count)]

    monkeypatch.setattr(load, "open_channels", slow_dial)
    reads: list[tuple[str, float]] = []
    server = iter([100.0, 103.5])

    def server_cpu() -> float:
        reads.append(("server", time.perf_counter()))
        return next(server)

    recording = load.run(
        ClosedLoop(2, 0.2), NOWHERE, [b"request"], channels=2, timeout=5.0, reuse=True,
        server_cpu=server_cpu,
    )  # fmt: skip
    assert [what for what, _ in reads] == ["dialled", "server", "server"]
    assert reads[-1][1] >= max(answers)
    assert recording.server_cpu == pytest.approx(3.5)
    assert 0 < recording.client_cpu < 0.4
