"""Every approval is a hold in the bank's ledger, and a run nothing of the bank's checked
says so.

The bank here is a real gRPC server on port 0 answering Authorize; what it approves is
the judge's word (its answers are not opened), but the holds it makes are real: each call
authorizes in a real ledger, on SQLite and on a throwaway PostgreSQL cluster, read through
the bench's own probe (``cli.bench_ledger.ledger_probe``). While the bench's run goes on,
the ledger also does what a live bank's does: the hold sweeper releases the holds an
earlier run made, and another merchant's traffic makes holds of its own. Neither is the
bench's to count.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import bench as cli_bench
from cli.bench_ledger import ledger_probe
from clients.loadtest import bank_page, holds, load
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.load import OpenLoop, Recording
from clients.loadtest.plan import Plan, Service
from clients.loadtest.prepare import bench_merchant_id
from clients.loadtest.report import tally_json, to_json, to_text
from clients.loadtest.tally import TIMEOUT_STATUS, Tally, Verdict, tally
from gateway.ledger import Ledger, LedgerKeys
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
    PgCluster,
    postgres_backend,
    sqlite_backend,
    throwaway_pg_cluster,
)

from .conftest import serve_authorize

AMOUNT = 1000
RUN = OpenLoop(25.0, 0.2)  # 5 requests, the reviewer's five approvals
# Holds an earlier run left, which the sweeper releases during this one.
EARLIER_HOLDS = 3
# How long the earlier run's holds had left when this run began: the bank's clock passes
# it at the run's first call.
EARLIER_LIFETIME_MS = 1000
OTHER_MERCHANT = "another-merchant"
LIMIT = 10**9  # the cards' credit limit: no hold of these tests comes near it


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    with throwaway_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "ledger.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return postgres_backend(cluster.new_schema())


class _LiveBank:
    """A real gRPC server on port 0 whose every call makes ``per_approval`` holds of
    ``hold_amount`` for the bench's merchant in a real ledger, and one for another
    merchant; its first call also lets the earlier run's holds fall due and sweeps them."""

    def __init__(self, ledger: Ledger, clock: FakeClock, per_approval: int, hold_amount: int):
        self.ledger = ledger
        self.merchant = bench_merchant_id()
        self._clock = clock
        self._driver = Bank(ledger)
        self._per_approval = per_approval
        self._hold_amount = hold_amount
        self._swept = threading.Event()
        self._lock = threading.Lock()
        ledger.open_merchant_account(self.merchant, EUR)
        ledger.open_merchant_account(OTHER_MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, LIMIT, EUR)
        ledger.open_card_account(PAN_B, EXPIRY, LIMIT, EUR)
        due = clock() + EARLIER_LIFETIME_MS
        for _ in range(EARLIER_HOLDS):
            self._driver.authorize(PAN_A, AMOUNT, merchant=self.merchant, expires_at_ms=due)
        self.server, self.port = serve_authorize(self._handle)

    def _handle(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            if not self._swept.is_set():
                self._clock.advance(EARLIER_LIFETIME_MS)
                assert self.ledger.expire_holds() == EARLIER_HOLDS
                self._swept.set()
        for _ in range(self._per_approval):  # the holds, committed before the answer leaves
            self._driver.authorize(PAN_A, self._hold_amount, merchant=self.merchant)
        self._driver.authorize(PAN_B, AMOUNT, merchant=OTHER_MERCHANT)
        return b"approved"

    def pending_debits(self) -> int:
        """What the check before counted: the whole ledger's pending debits."""
        (totals,) = self.ledger.totals()
        return totals.debits_pending


@pytest.fixture
def make_bank(backend: Backend) -> Iterator[Any]:
    started: list[_LiveBank] = []
    ledgers: list[Ledger] = []

    def make(per_approval: int, hold_amount: int = AMOUNT) -> _LiveBank:
        clock = FakeClock()
        ledger = Ledger(backend.open_store(), LedgerKeys.generate(), clock=clock)
        ledgers.append(ledger)
        bank = _LiveBank(ledger, clock, per_approval, hold_amount)
        started.append(bank)
        return bank

    yield make
    for bank in started:
        bank.server.stop(None)
    for ledger in ledgers:
        ledger.check_balanced()
        ledger.close()


def _approved(_index: int, _response: bytes) -> Verdict:
    return Verdict(outcome="approved")


def _drive(bank: _LiveBank) -> Tally:
    """One run against ``bank``, its ledger read before and after as the bench reads it."""
    probe = ledger_probe(bank.ledger, bank.merchant)
    before = probe()
    recording = load.run(
        RUN, GatewayAccess(f"127.0.0.1:{bank.port}", None), [b"request"], channels=2,
        timeout=5.0, reuse=True, server_cpu=lambda: None,
    )  # fmt: skip
    held = holds.between(before, probe(), AMOUNT)
    return tally("gateway", recording, _approved, held=held, bank=True)


def _exit(counted: Tally) -> int:
    return cli_bench._report(argparse.Namespace(json=None, plot=None), _result(counted))


def test_the_bench_s_own_holds_are_counted_whatever_else_the_ledger_does(
    make_bank: Any,
) -> None:
    bank = make_bank(1)
    pending = bank.pending_debits()
    counted = _drive(bank)
    # The ledger's pending debits moved by other than the run's holds: 3 released, one
    # other merchant's hold per call, beside the bench's five.
    moved = (RUN.requests - EARLIER_HOLDS + RUN.requests) * AMOUNT
    assert bank.pending_debits() - pending == moved != RUN.requests * AMOUNT
    assert counted.approved == counted.sent == RUN.requests
    assert counted.holds is not None and counted.holds.made == RUN.requests
    assert counted.accounted and counted.clean and not counted.accounting_doubts
    assert counted.bank_checked
    assert tally_json(counted)["ledger_holds"] == {
        "holds_made": RUN.requests, "held_amount": RUN.requests * AMOUNT, "amount": AMOUNT,
    }  # fmt: skip
    assert f"gateway ledger holds: {RUN.requests} made for the bench's merchant" in to_text(
        _result(counted)
    )
    assert _exit(counted) == 0


@pytest.mark.parametrize(
    ("per_approval", "hold_amount", "said"),
    [
        (0, AMOUNT, "the bank's ledger made 0 holds for the bench's merchant, the bench "
                    "verified 5 approvals: expected 5"),
        (2, AMOUNT, "the bank's ledger made 10 holds for the bench's merchant, the bench "
                    "verified 5 approvals: expected 5"),
        (1, AMOUNT - 1, "the bank's ledger's holds for the bench's merchant came to +4,995, "
                        "not 5 of 1,000"),
    ],
)  # fmt: skip
def test_a_bank_whose_ledger_holds_other_than_its_approvals_is_not_accounted_for(
    make_bank: Any, per_approval: int, hold_amount: int, said: str
) -> None:
    # The other merchant's holds, one per call, are as many as the approvals: counted in,
    # they would hide a bank that made none for the bench's.
    counted = _drive(make_bank(per_approval, hold_amount))
    assert counted.approved == counted.sent == RUN.requests
    assert counted.unaccounted == (said,)
    assert not counted.accounted and not counted.clean
    assert f"REQUESTS UNACCOUNTED FOR: {said}" in to_text(_result(counted))
    assert _exit(counted) == cli_bench.EXIT_FAILED


def test_a_merchant_the_ledger_does_not_know_leaves_the_holds_unread(make_bank: Any) -> None:
    bank = make_bank(1)
    assert ledger_probe(bank.ledger, bench_merchant_id())() is None
    assert ledger_probe(bank.ledger, bank.merchant)() == holds.LedgerReading(
        EARLIER_HOLDS, EARLIER_HOLDS * AMOUNT
    )


def test_a_run_with_failures_is_held_to_bounds_of_holds() -> None:
    def problems(made: int, approved: int, failed: int, carried: int = 0) -> tuple[str, ...]:
        held = holds.Holds(made, made * AMOUNT, AMOUNT)
        counted = tally("gateway", _recording(approved, failed), _approved, held=held,
                        carried=carried, bank=True)  # fmt: skip
        return counted.unaccounted

    # Two calls unanswered: each may or may not have made its hold.
    assert problems(20, 18, 2) == ()
    assert problems(18, 18, 2) == ()
    assert problems(17, 18, 2) == (
        "the bank's ledger made 17 holds for the bench's merchant, the bench verified 18 "
        "approvals: expected 18 to 20",
    )
    assert problems(21, 18, 2) != ()
    # ... or, unconfirmed at rest, in the run after theirs.
    assert problems(21, 20, 0, carried=1) == ()
    assert problems(21, 20, 0) != ()


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
    counted = tally("gateway", _recording(5), _approved, None, bank=True)
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
    echo = tally("echo", _recording(5), _approved, None)
    assert echo.accounting_doubts == () and not echo.bank_checked


def _recording(answered: int, timed_out: int = 0) -> Recording:
    """A recording of ``answered`` answers (the judge approves them) and ``timed_out``
    calls that had none."""
    samples = []
    for index in range(answered + timed_out):
        sample = load.Sample(index, 0.0)
        sample.sent, sample.took, sample.status, sample.response = 0.0, 0.01, "OK", b"r"
        if index >= answered:
            sample.status, sample.response = TIMEOUT_STATUS, None
        samples.append(sample)
    shape = OpenLoop(len(samples) / RUN.duration, RUN.duration)  # as many as it scheduled
    return Recording(shape, samples, 0.0, RUN.duration, 0.0, None, 1, 0.0, False,
                     calls_started=len(samples))  # fmt: skip


def _result(counted: Tally) -> BenchResult:
    result = BenchResult({}, Plan(duration=RUN.duration, rates=(RUN.rate,)))
    result.steps.append(StepResult(RUN, {Service.GATEWAY: counted}))
    return result
