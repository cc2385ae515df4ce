"""Every approval is a hold in the bank's ledger, and a run nothing of the bank's checked
says so.

The bank here is a real gRPC server on port 0 answering Authorize; what it approves is
the judge's word (its answers are not opened), and what its ledger holds is a test double
of the ledger's one read the bench makes (``Ledger.totals``), read through the bench's
own probe (``cli.bench_ledger.ledger_probe``).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cli import bench as cli_bench
from cli.bench_ledger import ledger_probe
from clients.loadtest import bank_page, holds, load
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.load import OpenLoop, Recording
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import tally_json, to_json, to_text
from clients.loadtest.tally import Tally, Verdict, tally
from gateway.ledger import CurrencyTotals, Ledger

from .conftest import serve_authorize

CURRENCY = 978
AMOUNT = 1000
RUN = OpenLoop(100.0, 0.2)  # 20 requests


class _Ledger:
    """The ledger's debit sums as a bank makes ``holds_per_approval`` holds of
    ``hold_amount`` for each call it answers."""

    def __init__(self, holds_per_approval: int, hold_amount: int = AMOUNT) -> None:
        self.pending = 0
        self._per_call = holds_per_approval * hold_amount
        self._lock = threading.Lock()

    def approve(self) -> None:
        with self._lock:
            self.pending += self._per_call

    def totals(self) -> tuple[CurrencyTotals, ...]:
        with self._lock:
            pending = self.pending
        # Another currency's books the bench's check must not count.
        return (
            CurrencyTotals(CURRENCY - 1, 7, 7, 7, 7),
            CurrencyTotals(CURRENCY, pending, 0, pending, 0),
        )


class _Bank:
    """A real gRPC server on port 0 that approves every call, with its ledger."""

    def __init__(self, ledger: _Ledger) -> None:
        self.ledger = ledger
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        self.ledger.approve()  # the hold, committed before the answer leaves
        return b"approved"


@pytest.fixture
def make_bank() -> Iterator[Any]:
    started: list[_Bank] = []

    def make(holds_per_approval: int, hold_amount: int = AMOUNT) -> _Bank:
        bank = _Bank(_Ledger(holds_per_approval, hold_amount))
        started.append(bank)
        return bank

    yield make
    for bank in started:
        bank.server.stop(None)


def _approved(_index: int, _response: bytes) -> Verdict:
    return Verdict(outcome="approved")


def _drive(bank: _Bank) -> Tally:
    """One run against ``bank``, its ledger read before and after as the bench reads it."""
    probe = _probe(bank)
    before = probe()
    recording = load.run(
        RUN, GatewayAccess(f"127.0.0.1:{bank.port}", None), [b"request"], channels=2,
        timeout=5.0, reuse=True, server_cpu=lambda: None,
    )  # fmt: skip
    held = holds.between(before, probe(), AMOUNT)
    return tally("gateway", recording, _approved, held=held, bank=True)


def _probe(bank: _Bank) -> holds.LedgerProbe:
    ledger: Ledger = bank.ledger  # type: ignore[assignment]  # the one read it makes
    return ledger_probe(ledger, CURRENCY)


def _exit(counted: Tally) -> int:
    return cli_bench._report(argparse.Namespace(json=None, plot=None), _result(counted))


def test_a_hold_for_every_approval_is_accounted_for(make_bank: Any) -> None:
    counted = _drive(make_bank(1))
    assert counted.approved == counted.sent == 20
    assert counted.holds is not None and counted.holds.made == 20
    assert counted.accounted and counted.clean and not counted.accounting_doubts
    assert counted.bank_checked
    assert tally_json(counted)["ledger_holds"] == {
        "holds_made": 20, "pending_debits_change": 20 * AMOUNT, "posted_debits_change": 0,
        "amount": AMOUNT,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("per_approval", "hold_amount", "said"),
    [
        (0, AMOUNT, "the bank's ledger made 0 holds (pending debits +0), the bench verified "
                    "20 approvals: expected 20"),
        (2, AMOUNT, "the bank's ledger made 40 holds (pending debits +40,000), the bench "
                    "verified 20 approvals: expected 20"),
        (1, AMOUNT - 1, "the bank's pending debits changed by +19,980, not a whole number "
                        "of holds of 1,000"),
    ],
)  # fmt: skip
def test_a_bank_whose_ledger_holds_other_than_its_approvals_is_not_accounted_for(
    make_bank: Any, per_approval: int, hold_amount: int, said: str
) -> None:
    counted = _drive(make_bank(per_approval, hold_amount))
    assert counted.approved == counted.sent == 20
    assert counted.unaccounted == (said,)
    assert not counted.accounted and not counted.clean
    assert f"REQUESTS UNACCOUNTED FOR: {said}" in to_text(_result(counted))
    assert _exit(counted) == cli_bench.EXIT_FAILED


def test_a_run_with_failures_is_held_to_bounds_of_holds() -> None:
    # Two calls unanswered: each may or may not have made its hold.
    assert holds.problems(holds.Holds(20 * AMOUNT, 0, AMOUNT), 18, 2) == ()
    assert holds.problems(holds.Holds(18 * AMOUNT, 0, AMOUNT), 18, 2) == ()
    assert holds.problems(holds.Holds(17 * AMOUNT, 0, AMOUNT), 18, 2) != ()
    assert holds.problems(holds.Holds(21 * AMOUNT, 0, AMOUNT), 18, 2) != ()
    # ... or, unconfirmed at rest, in the run after theirs.
    assert holds.problems(holds.Holds(21 * AMOUNT, 0, AMOUNT), 20, 0, carried=1) == ()
    # A capture meanwhile leaves the holds uncounted: a doubt, not a failure.
    moved = holds.Holds(20 * AMOUNT, 5, AMOUNT)
    assert holds.problems(moved, 20, 0) == () and holds.unknown(moved) != ()


def test_approvals_the_bank_s_page_decided_otherwise_are_not_accounted_for() -> None:
    # The bank answered as many decisions as the bench verified, but half were declines.
    def page(approved: int, declined: int) -> bank_page.Reading:
        return bank_page.read(
            f'setpay_authorizations_total{{outcome="approved",reason="none"}} {approved}\n'
            f'setpay_authorizations_total{{outcome="declined",reason="X"}} {declined}\n'
            f'setpay_worker_rpcs_total{{worker="0"}} {approved + declined}\n'
        )

    during = bank_page.between(page(0, 0), page(10, 10), 1)
    assert (during.decisions, during.approvals) == (20, 10)
    counted = tally("gateway", _recording(20), _approved, during, bank=True)
    assert counted.unaccounted == ("the bank answered 10 approvals, the bench verified 20",)
    assert not counted.clean
    agreeing = bank_page.between(page(0, 0), page(20, 0), 1)
    assert tally("gateway", _recording(20), _approved, agreeing, bank=True).clean


def test_a_bank_run_nothing_of_the_bank_s_checked_is_in_doubt() -> None:
    counted = tally("gateway", _recording(20), _approved, None, bank=True)
    assert counted.accounted and counted.clean and not counted.bank_checked
    (unchecked,) = counted.accounting_doubts
    assert unchecked.startswith("not checked against the bank: neither its metrics page")
    result = _result(counted)
    assert f"DOUBT: gateway: {unchecked}" in to_text(result)
    document = to_json(result)
    (step,) = document["steps"]
    assert step["results"]["gateway"]["bank_checked"] is False
    assert document["doubts"] == [f"{RUN.label}, gateway: {unchecked}"]
    assert _exit(counted) == cli_bench.EXIT_NOT_CLEAN
    # A reference service has no bank: nothing to check, nothing doubted.
    echo = tally("echo", _recording(20), _approved, None)
    assert echo.accounting_doubts == () and not echo.bank_checked


def _recording(sent: int) -> Recording:
    samples = []
    for index in range(sent):
        sample = load.Sample(index, 0.0)
        sample.sent, sample.took, sample.status, sample.response = 0.0, 0.01, "OK", b"r"
        samples.append(sample)
    return Recording(RUN, samples, 0.0, RUN.duration, 0.0, None, 1, 0.0, False,
                     calls_started=sent)  # fmt: skip


def _result(counted: Tally) -> BenchResult:
    result = BenchResult({}, Plan(duration=RUN.duration, rates=(RUN.rate,)))
    result.steps.append(StepResult(RUN, {Service.GATEWAY: counted}))
    return result
