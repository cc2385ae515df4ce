"""Every request accounted for, checked against counts the tally does not make itself.

The tally's three counts (ok, errors, timeouts) add up to the requests recorded whatever
happens, so the check is against what was scheduled, what the sender started, and what
the bank's own metrics page counted (its workers' calls, its authorization decisions). The
bank here is a real gRPC server on port 0 with a servicer that counts its calls, the way
the bank's ``setpay_worker_rpcs_total`` does, read through the bench's page probe seam.
"""

from __future__ import annotations

import argparse
import math
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cli import bench as cli_bench
from clients.loadtest import bank_page, load
from clients.loadtest.bank_page import Activity, LedgerCommits, Reading, WorkerCalls
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.channels import AUTHORIZE_METHOD, GatewayAccess
from clients.loadtest.load import ClosedLoop, OpenLoop, Recording, Sample
from clients.loadtest.plan import Plan, Service
from clients.loadtest.prepare import Population
from clients.loadtest.tally import TIMEOUT_STATUS, Verdict, echo_judge, tally
from setcore.amount import check_amount
from setcore.profiles import profile_named

from .conftest import serve_authorize


class _CountingBank:
    """A real gRPC server on port 0 answering Authorize, counting the calls it handled."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self.calls += 1
        return b"answer"

    def page(self) -> Reading:
        """What the bank's metrics page says: the calls of its one worker."""
        return Reading(worker_calls={"0": float(self.calls)})

    @property
    def access(self) -> GatewayAccess:
        return GatewayAccess(f"127.0.0.1:{self.port}", None)


@pytest.fixture
def counting_bank() -> Iterator[_CountingBank]:
    bank = _CountingBank()
    try:
        yield bank
    finally:
        bank.server.stop(None)


def _run(bank: _CountingBank, shape: OpenLoop | ClosedLoop) -> Recording:
    return load.run(
        shape, bank.access, [b"request"], channels=2, timeout=5.0, reuse=True,
        server_cpu=lambda: None,
    )  # fmt: skip


def test_a_run_the_bank_counted_alike_is_accounted_for(counting_bank: _CountingBank) -> None:
    before = counting_bank.page()
    recording = _run(counting_bank, OpenLoop(200.0, 0.1))
    during = bank_page.between(before, counting_bank.page(), 1)
    counted = tally("gateway", recording, echo_judge, during)
    assert counted.sent == 20 == recording.calls_started
    assert counted.accounted and counted.clean, counted.unaccounted


def test_calls_the_bank_handled_beyond_those_sent_are_unaccounted_for(
    counting_bank: _CountingBank,
) -> None:
    # Another client's calls during the run: the bank's figures are not the bench's run.
    before = counting_bank.page()
    recording = _run(counting_bank, ClosedLoop(2, 0.1))
    with grpc.insecure_channel(counting_bank.access.target) as channel:
        other = channel.unary_unary(AUTHORIZE_METHOD)
        for _ in range(3):
            other(b"someone else", timeout=5.0)
    during = bank_page.between(before, counting_bank.page(), 1)
    counted = tally("gateway", recording, echo_judge, during)
    assert counted.errors == counted.timeouts == 0
    assert not counted.accounted and not counted.clean
    assert counted.unaccounted == (
        f"the bank's workers handled {counted.sent + 3:,} calls, the bench sent {counted.sent:,}",
    )


def test_a_closed_loop_s_calls_started_are_its_samples(counting_bank: _CountingBank) -> None:
    recording = _run(counting_bank, ClosedLoop(3, 0.1))
    assert recording.calls_started == len(recording.samples) > 0
    assert tally("echo", recording, echo_judge).accounted
    # A record lost after its call started: the tally's own counts still add up.
    recording.samples.pop()
    counted = tally("echo", recording, echo_judge)
    assert counted.sent == counted.ok + counted.errors + counted.timeouts
    assert not counted.accounted
    assert counted.unaccounted == (
        f"{recording.calls_started:,} calls started, {counted.sent:,} recorded",
    )


def _recording(shape: OpenLoop | ClosedLoop, samples: list[Sample]) -> Recording:
    return Recording(
        shape=shape, samples=samples, started=0.0, window=1.0, client_cpu=0.1,
        server_cpu=None, max_in_flight=2, send_lag_max=0.0, exhausted=False,
    )  # fmt: skip


def _answered(count: int, *, status: str = "OK", sent: bool = True) -> list[Sample]:
    samples = []
    for index in range(count):
        sample = Sample(index, due=index * 0.01)
        sample.sent = sample.due if sent else math.nan
        sample.status = status
        sample.response = b"answer" if status == "OK" else None
        sample.took = 0.005
        samples.append(sample)
    return samples


def test_an_open_loop_that_recorded_fewer_requests_than_it_scheduled_is_unaccounted() -> None:
    counted = tally("echo", _recording(OpenLoop(100.0, 1.0), _answered(50)), echo_judge)
    assert counted.sent == counted.ok == 50
    assert not counted.accounted and not counted.clean
    assert counted.unaccounted == ("100 requests scheduled, 50 recorded",)


def test_a_request_recorded_without_a_send_time_is_unaccounted() -> None:
    samples = _answered(99) + _answered(1, status="", sent=False)
    counted = tally("echo", _recording(OpenLoop(100.0, 1.0), samples), echo_judge)
    assert not counted.accounted
    assert counted.unaccounted == ("1 requests recorded without a send time",)


def _approve(index: int, response: bytes) -> Verdict:
    return Verdict(outcome="approved")


def test_the_banks_decisions_must_be_the_decisions_verified() -> None:
    recording = _recording(OpenLoop(100.0, 1.0), _answered(100))
    assert tally("gateway", recording, _approve, Activity(decisions=100)).accounted
    counted = tally("gateway", recording, _approve, Activity(decisions=97))
    assert not counted.accounted
    assert counted.unaccounted == (
        "the bank answered 97 authorization decisions, the bench verified 100",
    )


def test_ledger_operations_are_not_held_to_the_decisions() -> None:
    # A decline takes two ledger writes and the hold sweeper commits too: a clean run
    # whose ledger committed more operations than decisions is still accounted for.
    recording = _recording(OpenLoop(100.0, 1.0), _answered(100))
    during = Activity(LedgerCommits(commits=20, operations=130, seconds=0.1), decisions=100)
    assert tally("gateway", recording, _approve, during).accounted


def test_the_page_reading_counts_decisions_of_every_outcome() -> None:
    page = (
        'setpay_authorizations_total{outcome="approved",reason="none"} 7.0\n'
        'setpay_authorizations_total{outcome="declined",reason="AMOUNT_MISMATCH"} 3.0\n'
    )
    before = bank_page.read("")
    assert before.decisions is None
    assert bank_page.between(bank_page.read(page), bank_page.read(page), 1).decisions == 0
    after = bank_page.read(page.replace(" 3.0", " 5.0"))
    assert bank_page.between(bank_page.read(page), after, 1).decisions == 2


def test_a_run_that_failed_is_held_to_bounds_not_to_equality() -> None:
    # Timed-out calls may or may not have been handled when the page was read.
    samples = _answered(90) + _answered(10, status=TIMEOUT_STATUS)
    for index, sample in enumerate(samples):
        sample.index = index
    recording = _recording(OpenLoop(100.0, 1.0), samples)
    for handled, accounted in ((90, True), (95, True), (100, True), (89, False), (101, False)):
        during = Activity(workers=WorkerCalls((handled,), expected=1))
        counted = tally("gateway", recording, _approve, during)
        assert counted.accounted is accounted, handled
        assert not counted.clean


def _result(*tallies_of_steps: Any) -> BenchResult:
    result = BenchResult({}, Plan(duration=1.0, rates=(100.0,)))
    for counted in tallies_of_steps:
        result.steps.append(StepResult(OpenLoop(100.0, 1.0), {Service.GATEWAY: counted}))
    return result


def test_the_exit_status_says_unaccounted_and_unclean_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(json=None, plot=None)
    clean = tally("gateway", _recording(OpenLoop(100.0, 1.0), _answered(100)), echo_judge)
    samples = _answered(99) + _answered(1, status="UNAVAILABLE")
    for index, sample in enumerate(samples):
        sample.index = index
    failed = tally("gateway", _recording(OpenLoop(100.0, 1.0), samples), echo_judge)
    lost = tally("gateway", _recording(OpenLoop(100.0, 1.0), _answered(50)), echo_judge)
    assert cli_bench._report(args, _result(clean, clean)) == 0
    assert cli_bench._report(args, _result(clean, failed)) == 3
    assert cli_bench._report(args, _result(failed, lost)) == 1
    assert (cli_bench.EXIT_FAILED, cli_bench.EXIT_NOT_CLEAN) == (1, 3)
    assert "gateway: REQUESTS UNACCOUNTED FOR: 100 requests scheduled, 50 recorded" in (
        capsys.readouterr().out
    )


def test_a_warm_up_with_an_error_leaves_clean_steps_clean(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The warm-up is reported apart and "not counted below": a cold start's failure in
    # it is no step's, while a warm-up request unaccounted for still fails the run.
    args = argparse.Namespace(json=None, plot=None)
    clean = tally("gateway", _recording(OpenLoop(100.0, 1.0), _answered(100)), echo_judge)
    samples = _answered(49) + _answered(1, status=TIMEOUT_STATUS)
    for index, sample in enumerate(samples):
        sample.index = index
    warm = tally("gateway", _recording(OpenLoop(50.0, 1.0), samples), echo_judge)
    assert warm.accounted and not warm.clean
    result = _result(clean)
    result.warmup[Service.GATEWAY] = warm
    assert cli_bench._report(args, result) == 0
    lost = tally("gateway", _recording(OpenLoop(100.0, 1.0), _answered(50)), echo_judge)
    result.warmup[Service.GATEWAY] = lost
    assert cli_bench._report(args, result) == 1


@pytest.mark.parametrize(("currency", "exponent"), [(978, 2), (392, 0), (48, 3)])
def test_the_bench_buys_in_its_currencys_own_exponent(currency: int, exponent: int) -> None:
    # A bank whose settlement currency has no two decimals (JPY, BHD) used to fail the
    # bench's own purchases, built at 2 whatever the currency.
    population = Population(
        profile=profile_named("ec"), brand_id="setpay", bin="411111", cardholders=1,
        expiry="203012", credit_limit=10_000, currency=currency, amount=1000,
    )  # fmt: skip
    money = population.money(1000)
    assert (money.currency, money.exp10) == (currency, exponent)
    check_amount(money)
