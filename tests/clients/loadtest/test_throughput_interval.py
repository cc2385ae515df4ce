"""Throughput is the verified answers that arrived within the step's measured interval, per
second of it (``load``'s docstring): one call stuck until its deadline, or answers that
arrived after the step's end, change the count, never the interval; a closed loop that
ran out of requests is measured to the later of its last send and its last answer, every
answer counted, not to a straggler's deadline nor only to its first caller with nothing
left to send."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clients.loadtest import load
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.load import ClosedLoop, OpenLoop, Recording, Sample
from clients.loadtest.plan import Plan
from clients.loadtest.tally import TIMEOUT_STATUS, echo_judge, tally

from .conftest import serve_authorize

# A step of ten seconds, as the bench's default.
STEP = 10.0


def _sample(index: int, due: float, took: float, status: str = "OK") -> Sample:
    sample = Sample(index, due)
    sample.sent, sample.took, sample.status = due, took, status
    sample.response = b"answer" if status == "OK" else None
    return sample


def _recording(shape: OpenLoop | ClosedLoop, samples: list[Sample], exhausted: bool) -> Recording:
    """As ``load.run`` records it: the window runs to the last call's end."""
    window = max(s.due + s.took for s in samples)
    return Recording(shape, samples, 0.0, window, 0.1, None, 4, 0.0, exhausted,
                     calls_started=len(samples))  # fmt: skip


def _answers(count: int, every: float, took: float, first: int = 0) -> list[Sample]:
    return [_sample(first + i, i * every, took) for i in range(count)]


def test_one_timeout_does_not_stretch_a_closed_loop_s_interval() -> None:
    # 1,000 answers in the step's 10 s; one call sent at 9.9 s waits for its 5 s deadline.
    samples = [*_answers(1000, 0.01, 0.005), _sample(1000, 9.9, 5.0, TIMEOUT_STATUS)]
    counted = tally("gateway", _recording(ClosedLoop(4, STEP), samples, False), echo_judge)
    assert counted.duration == STEP
    assert counted.throughput == 100.0  # not 1,000 over 14.9 s (67/s)


def test_answers_after_the_step_s_end_are_not_counted() -> None:
    # An open loop of 100/s the server answers 2 s late: it kept up with no more than the
    # answers that came back within the 10 s (the first 800), not with what it drained
    # afterwards.
    samples = _answers(1000, 0.01, 2.005)
    counted = tally("gateway", _recording(OpenLoop(100.0, STEP), samples, False), echo_judge)
    assert counted.ok == 1000
    assert counted.duration == STEP
    assert counted.throughput == 800 / STEP


def test_a_closed_loop_out_of_requests_is_measured_to_its_last_call() -> None:
    # 400 answers in 4 s, then nothing left to send: 100/s, over the 4 s it ran.
    samples = _answers(400, 0.01, 0.01)
    counted = tally("gateway", _recording(ClosedLoop(4, STEP), samples, True), echo_judge)
    assert counted.exhausted and not counted.clean
    assert counted.duration == pytest.approx(4.0)
    assert counted.throughput == pytest.approx(100.0)


def test_a_straggler_does_not_stretch_a_closed_loop_out_of_requests() -> None:
    # One call sent at 2 s waits for its 5 s deadline, until 7 s; the others' last answer
    # ends at 4.005 s (sent at 3.99 s): the interval ends there, and every answer counts,
    # the one still in flight when the first caller found nothing left (3.995 s) too.
    samples = [*_answers(400, 0.01, 0.015), _sample(400, 2.0, 5.0, TIMEOUT_STATUS)]
    counted = tally("gateway", _recording(ClosedLoop(4, STEP), samples, True), echo_judge)
    assert (counted.ok, counted.timeouts) == (400, 1)
    assert counted.duration == pytest.approx(4.005)  # not 7 s, the deadline's end
    assert counted.throughput == pytest.approx(400 / 4.005)  # not 57/s, nor 399 answers


def test_a_closed_loop_whose_last_calls_all_timed_out_ends_at_its_last_send() -> None:
    # Its four callers' last calls, sent at 3.96-3.99 s, all waited for their deadline
    # (until 8.96-8.99 s); its last answer ended at 3.955 s. The interval ends at the last
    # send, 3.99 s: the deadlines' wait would make the rate the callers kept up while they
    # had requests look half as high (44/s), and the loop is already not clean, its four
    # timeouts counted and reported. (Measured to the first of those deadlines, 8.96 s, as
    # the interval was before, it blamed the rate for what the timeouts already say.)
    samples = [
        *_answers(396, 0.01, 0.005),
        *(_sample(396 + i, 3.96 + i * 0.01, 5.0, TIMEOUT_STATUS) for i in range(4)),
    ]
    counted = tally("gateway", _recording(ClosedLoop(4, STEP), samples, True), echo_judge)
    assert (counted.ok, counted.timeouts) == (396, 4)
    assert not counted.clean
    assert counted.duration == pytest.approx(3.99)
    assert counted.throughput == pytest.approx(396 / 3.99)


def _wave(count: int, took: list[float], status: str = "OK") -> list[Sample]:
    """``count`` requests all sent at once (as many callers), answered after ``took``."""
    return [_sample(i, 0.0, took[i % len(took)], status) for i in range(count)]


def test_a_closed_loop_with_no_more_requests_than_callers_counts_every_answer() -> None:
    # 32 requests to 32 callers, all sent at once and answered in 15-25 ms: 32 answers in
    # 25 ms, not the first one alone over the first latency (1 / 15 ms, 67/s).
    samples = _wave(32, [0.015 + 0.010 * i / 31 for i in range(32)])
    counted = tally("gateway", _recording(ClosedLoop(32, STEP), samples, True), echo_judge)
    assert counted.ok == 32
    assert counted.duration == pytest.approx(0.025)
    assert counted.throughput == pytest.approx(32 / 0.025)


def test_only_an_answer_ends_the_interval_not_a_refusal_nor_a_call_given_up_on() -> None:
    # The last request, sent at 80 ms, is refused UNAVAILABLE at 4.9 s (a worker that
    # waited for its turn): no answer, and it must not stretch the interval, which ends at
    # that last send (the last answer came at 75 ms). Two calls given up on (no status)
    # ended at 90 and 500 ms: neither stretches it either.
    samples = [*_answers(8, 0.01, 0.005), _sample(8, 0.08, 4.82, "UNAVAILABLE")]
    given_up = [_sample(9, 0.075, 0.015, ""), _sample(10, 0.06, 0.44, "")]
    counted = tally(
        "gateway", _recording(ClosedLoop(4, STEP), [*samples, *given_up], True), echo_judge
    )
    assert (counted.ok, counted.errors) == (8, 3)
    assert counted.duration == pytest.approx(0.08)
    assert counted.throughput == pytest.approx(8 / 0.08)


def test_the_load_fraction_follows_the_rate_the_callers_kept_up() -> None:
    samples = [*_answers(1000, 0.01, 0.005), _sample(1000, 9.9, 5.0, TIMEOUT_STATUS)]
    counted = tally("gateway", _recording(ClosedLoop(4, STEP), samples, False), echo_judge)
    plan = Plan(duration=STEP, concurrency=4, load_fraction=0.8)
    assert plan.at_fraction(counted.throughput) == OpenLoop(80.0, STEP)


class _StuckOnce:
    """A real gRPC server whose first call is held until released (past its deadline)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._first = threading.Lock()
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        if self._first.acquire(blocking=False):
            self.release.wait(HELD_SECONDS)
        return b"answer"


# How long the first call is held at most: past its deadline, never for the whole test.
HELD_SECONDS = 5.0
# The call's deadline: twice the closed loop's duration, so the old window doubled.
DEADLINE = 1.0
DURATION = 0.5


@pytest.fixture
def stuck_once() -> Iterator[_StuckOnce]:
    bank = _StuckOnce()
    yield bank
    bank.release.set()
    bank.server.stop(None)


def test_a_live_closed_loop_with_a_timeout_reports_the_rate_it_ran_at(
    stuck_once: _StuckOnce,
) -> None:
    access = GatewayAccess(f"127.0.0.1:{stuck_once.port}", None)
    recording = load.run(ClosedLoop(2, DURATION), access, [b"x"], channels=2, timeout=DEADLINE,
                         reuse=True, server_cpu=lambda: None)  # fmt: skip
    counted = tally("echo", recording, echo_judge)
    assert counted.timeouts == 1
    assert recording.window >= DEADLINE  # the drain ran to the stuck call's deadline
    in_time = [
        s for s in recording.samples
        if s.status == "OK" and s.due + s.took <= recording.started + DURATION
    ]  # fmt: skip
    assert counted.duration == DURATION
    assert counted.throughput == len(in_time) / DURATION
    # Over the window it would have been at most half of that.
    assert counted.ok > 4
    assert counted.throughput >= 1.5 * counted.ok / recording.window


def test_a_live_closed_loop_out_of_requests_ends_when_it_ran_out(stuck_once: _StuckOnce) -> None:
    # The first call is held past its deadline; the other caller sends the rest, and
    # finds none left long before the deadline.
    access = GatewayAccess(f"127.0.0.1:{stuck_once.port}", None)
    recording = load.run(ClosedLoop(2, STEP), access, [b"x"] * POOL, channels=2,
                         timeout=DEADLINE, reuse=False, server_cpu=lambda: None)  # fmt: skip
    counted = tally("echo", recording, echo_judge)
    assert recording.exhausted
    assert (counted.ok, counted.timeouts) == (POOL - 1, 1)
    # To the last answer (every answer counts), not to the held call's deadline.
    answers = [s.due + s.took for s in recording.samples if s.status == "OK"]
    assert counted.duration == pytest.approx(max(answers) - recording.started)
    assert counted.duration < DEADLINE  # not the held call's deadline
    assert counted.throughput == (POOL - 1) / counted.duration


# Prepared requests for a closed loop that runs out of them: a few, quickly answered.
POOL = 20


class _PastTheStep:
    """A real gRPC server answering each call only after a step of ``STEP_HELD`` has
    passed since the call came, so after the closed loop's time is up."""

    def __init__(self) -> None:
        self._waiting = threading.Event()  # never set: waited on with a timeout only
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        end = time.perf_counter() + STEP_HELD
        while (left := end - time.perf_counter()) > 0:
            self._waiting.wait(left)
        return b"answer"


# The closed loop's duration, and how long each call is held: the loop's one call ends
# after its step is over.
STEP_HELD = 0.2


@pytest.fixture
def past_the_step() -> Iterator[_PastTheStep]:
    bank = _PastTheStep()
    yield bank
    bank.server.stop(None)


def test_a_closed_loop_that_ran_its_length_did_not_run_out(past_the_step: _PastTheStep) -> None:
    # One prepared request, one caller: its call ends after the step's time is up, and the
    # index it takes next is past the pool. The step lasted its length: not "ran out".
    access = GatewayAccess(f"127.0.0.1:{past_the_step.port}", None)
    recording = load.run(ClosedLoop(1, STEP_HELD), access, [b"x"], channels=1, timeout=30.0,
                         reuse=False, server_cpu=lambda: None)  # fmt: skip
    [sample] = recording.samples
    assert sample.due + sample.took >= recording.started + STEP_HELD
    assert not recording.exhausted
    counted = tally("echo", recording, echo_judge)
    assert counted.clean and counted.duration == STEP_HELD


@pytest.fixture
def answering() -> Iterator[int]:
    """A real gRPC server answering every call at once; its port."""
    server, port = serve_authorize(lambda request, context: b"answer")
    yield port
    server.stop(None)


def test_a_live_closed_loop_with_as_many_callers_as_requests_counts_every_answer(
    answering: int,
) -> None:
    # One wave: every request is sent at the start, and the loop ran out with all of them
    # in flight. Its figure is its answers over its last answer's end, not one answer
    # over the first latency.
    access = GatewayAccess(f"127.0.0.1:{answering}", None)
    recording = load.run(ClosedLoop(WAVE, STEP), access, [b"x"] * WAVE, channels=2,
                         timeout=DEADLINE, reuse=False, server_cpu=lambda: None)  # fmt: skip
    counted = tally("echo", recording, echo_judge)
    assert recording.exhausted and counted.ok == WAVE
    ends = [s.due + s.took for s in recording.samples]
    assert counted.duration == pytest.approx(max(ends) - recording.started)
    assert counted.throughput * counted.duration == pytest.approx(WAVE)


# Callers and requests of the one-wave loop.
WAVE = 4
