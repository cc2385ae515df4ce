"""A call the bench timed out runs on in the bank, and must not count in the next run.

The gateway does not check a call's deadline, so an Authorize the bench gave up on is
still decided, and counted on the bank's page, after the bench has moved on. The bank
here is a real gRPC server on port 0 whose page counts the way the gateway's does: a call
is in flight (``setpay_rpc_in_flight``) from its handler's start to its end, and its
decision and its worker's call are counted before it ends. One request is slowed past the
bench's deadline; the run after it sends only quick ones.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from cli import bench as cli_bench
from clients.loadtest import bank_page
from clients.loadtest.bank_page import Reading
from clients.loadtest.bench import Bench, BenchResult, StepResult
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Plan, Service, Target
from clients.loadtest.prepare import Parties, PreparedAuth
from clients.loadtest.report import tally_json, to_text
from clients.loadtest.tally import Tally
from setcore.authorization import AuthRequestState

from .conftest import serve_authorize

SLOW = b"slow"
QUICK = b"quick"
# The bench's per-call deadline in these runs, and how long the slow request takes: long
# enough past the deadline that it is still running when the next run's page is read.
# The deadline is the quick calls' too: at 0.2 s one of them timed out on a loaded
# machine, and the quick run was no longer clean.
DEADLINE_SECONDS = 0.5
SLOW_SECONDS = 1.5
# The quick run lasts well past the slow call's end, so that on the old code the slow
# call's decision lands inside it.
QUICK_RUN = OpenLoop(25.0, 2.0)


class _Bank:
    """A real gRPC server on port 0 answering Authorize, with a page that counts its calls
    the way the gateway's does."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.decisions = 0
        self.calls = 0
        self._lock = threading.Lock()
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self.in_flight += 1
        if request == SLOW:
            time.sleep(SLOW_SECONDS)  # the deadline passed long ago: no one checks it
        with self._lock:
            self.decisions += 1  # before the answer leaves, as the gateway counts it
            self.calls += 1
            self.in_flight -= 1
        return b"answer"

    def page(self) -> Reading:
        """What the bank's metrics page says now, in the gateway's names."""
        with self._lock:
            text = (
                f'setpay_worker_rpcs_total{{worker="0"}} {self.calls}.0\n'
                f'setpay_authorizations_total{{outcome="approved",reason="none"}} '
                f"{self.decisions}.0\n"
                f'setpay_rpc_in_flight{{method="Authorize"}} {self.in_flight}.0\n'
            )
        return bank_page.read(text)


@pytest.fixture
def bank() -> Iterator[_Bank]:
    served = _Bank()
    try:
        yield served
    finally:
        served.server.stop(None)


def _bench(bank: _Bank, bound: float | None) -> tuple[Bench, Target]:
    # The echo's answers are not opened, so the parties are never asked for the merchant.
    target = Target(Service.ECHO, GatewayAccess(f"127.0.0.1:{bank.port}", None),
                    lambda: None, page=bank.page)  # fmt: skip
    plan = Plan(duration=QUICK_RUN.duration, rates=(QUICK_RUN.rate,), channels=2,
                timeout=DEADLINE_SECONDS, warmup=False)  # fmt: skip
    parties = cast(Parties, None)
    if bound is None:  # the bench's own bound
        return Bench(parties, [target], plan, say=lambda _: None), target
    return Bench(parties, [target], plan, say=lambda _: None, settle_seconds=bound), target


def _prepared(request: bytes) -> list[PreparedAuth]:
    return [PreparedAuth(request, cast(AuthRequestState, None), built_ms=0)]


def _runs(bank: _Bank, bound: float | None = None) -> tuple[Tally, Tally]:
    """One slow request that times out, then a run of quick ones."""
    bench, target = _bench(bank, bound)
    slow = bench.drive(target, OpenLoop(10.0, 0.1), _prepared(SLOW))
    quick = bench.drive(target, QUICK_RUN, _prepared(QUICK))
    return slow, quick


def test_a_timed_out_call_decided_later_is_counted_in_its_own_run(bank: _Bank) -> None:
    slow, quick = _runs(bank)
    # The next run, clean, is held to equality, and its counts are its own.
    assert quick.unaccounted == ()
    assert quick.accounted and quick.clean and not quick.accounting_doubts
    # The slow call's decision came after the bench gave up, but before the run's
    # closing reading, which waited for it.
    assert (slow.sent, slow.timeouts) == (1, 1)
    assert slow.workers is not None and slow.workers.total == 1
    assert slow.accounted and not slow.accounting_doubts
    assert quick.workers is not None and quick.workers.total == quick.sent == quick.ok == 50


def test_a_bank_still_busy_past_the_bound_puts_the_accounting_in_doubt(bank: _Bank) -> None:
    # Each wait gives up after 0.2 s: the two between the runs end 0.4 s after the
    # deadline, while the slow call (1.0 s past it) still runs; it ends inside the quick run.
    slow, quick = _runs(bank, bound=0.2)
    for counted in (slow, quick):
        assert counted.unaccounted == () and counted.accounted
    assert slow.accounting_doubts == (
        "the bank was busy when its page was read (after the run: 1 call still in flight "
        "after 0.2 s), so its counts were not held to the bench's: they agree, but may "
        "count calls of the run before or miss some of this one",
    )
    assert quick.clean
    assert quick.accounting_doubts == (
        "the bank was busy when its page was read (before the run: 1 call still in flight "
        "after 0.2 s), so its counts were not held to the bench's: the bank's workers "
        "handled 51 calls, the bench sent 50; the bank answered 51 authorization decisions, "
        "the bench verified 50",
    )
    # Not a silent pass: the report says DOUBT, and the exit status is not 0; not a
    # failure either (1: a request unaccounted for).
    result = BenchResult({}, Plan(duration=QUICK_RUN.duration, rates=(QUICK_RUN.rate,)))
    result.steps.append(StepResult(QUICK_RUN, {Service.ECHO: quick}))
    assert f"DOUBT: echo: {quick.accounting_doubts[0]}" in to_text(result)
    assert tally_json(quick)["accounting_doubts"] == list(quick.accounting_doubts)
    args = argparse.Namespace(json=None, plot=None)
    assert cli_bench._report(args, result) == cli_bench.EXIT_NOT_CLEAN
