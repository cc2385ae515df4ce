"""A bench run: warm-up, then each step against each target, then the tallies.

Order inside a step: prepare the step's AuthReqs (untimed, progress bar), drive the
gateway, then the ceiling and the echo with the same shape and the same bytes (they keep
no replay store, so they may see a request again), then open every answer. Channels are
opened and connected per target and step, before its clock starts.

The bank's page is read before and after each run once the bank is at rest (``settle``):
a call an earlier run gave up on, still running in the bank, would otherwise be counted
in this run. The bank's ledger is read then too (``holds``); when nothing said the bank
was at rest after a run, its unanswered calls may still make their holds, and the next
run against that target is allowed them.

AuthReqs carry their signing date and are refused after five minutes: a batch that would
grow older than ``FRESHNESS_BUDGET_MS`` before a target's run ends is rebuilt first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from clients.loadtest import bank_page, cpu, holds, load, settle
from clients.loadtest.load import ClosedLoop, OpenLoop, Shape
from clients.loadtest.plan import Plan, Service, Target
from clients.loadtest.prepare import Parties, PreparedAuth, build_authorizations
from clients.loadtest.progress import ProgressBar
from clients.loadtest.speed import Speed
from clients.loadtest.tally import Judge, Tally, auth_judge, echo_judge, tally
from setcore.authorization import AuthResult, open_auth_response
from setcore.freshness import FRESHNESS_WINDOW_MS
from setpay.v1 import authorization_pb2

# One minute of margin inside the gateway's freshness window for clock steps and drain.
FRESHNESS_BUDGET_MS = FRESHNESS_WINDOW_MS - 60_000
# The warm-up sends one AuthReq per cardholder from this many callers at most, so every
# certificate chain is verified and cached before a clock starts.
WARMUP_CONCURRENCY = 8
# Warm-up duration bound: it ends when its requests run out, long before this.
WARMUP_SECONDS = 60.0

Say = Callable[[str], None]
SpeedProbe = Callable[[float, float], Speed | None]
"""The machine's speed readings between two monotonic times (``speed.SpeedSampler``)."""


def no_speed(start: float, end: float) -> Speed | None:
    """No readings (a bench without a sampler)."""
    return None


def _monotonic_window(recording: load.Recording) -> tuple[float, float]:
    """The run's clocked window (from its first due time to its last answer; not the
    dialling before it) on ``time.monotonic``, the clock the speed readings carry."""
    offset = time.monotonic() - time.perf_counter()
    start = recording.started + offset
    return start, start + recording.window


@dataclass
class StepResult:
    """One traffic shape, tallied per service."""

    shape: Shape
    tallies: dict[Service, Tally] = field(default_factory=dict)


@dataclass
class BenchResult:
    """Everything a run measured, with the setting it ran in."""

    setting: dict[str, object]
    plan: Plan
    warmup: dict[Service, Tally] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    # What makes the whole run's figures doubtful, beyond any one step (its setting's).
    doubts: list[str] = field(default_factory=list)

    def _sweep(self, service: Service) -> list[tuple[float, bool]]:
        """The open-loop rates run against ``service``, lowest first, and whether each ran
        clean, its requests checked against the bank, with p99 within ``plan.p99_max_ms``;
        at a rate run twice, a failure first: it decides, whatever order the runs had."""
        rates = []
        for step in self.steps:
            counted = step.tallies.get(service)
            if not isinstance(step.shape, OpenLoop) or counted is None:
                continue
            within = counted.latency is not None and counted.latency.p99 <= self.plan.p99_max_ms
            passed = counted.clean and not counted.accounting_doubts and within
            rates.append((step.shape.rate, passed))
        return sorted(rates)

    def sustained(self, service: Service = Service.GATEWAY) -> float | None:
        """The highest open-loop rate below the lowest that failed (not clean, or p99
        beyond ``plan.p99_max_ms``): a rate that passed above a failure is luck, not a
        rate the service sustains (``sweep_doubts`` names it)."""
        best = None
        for rate, passed in self._sweep(service):
            if not passed:
                break
            best = rate
        return best

    def sweep_doubts(self, service: Service = Service.GATEWAY) -> list[str]:
        """The rates that passed above a lower rate that failed."""
        failed: float | None = None
        found = []
        for rate, passed in self._sweep(service):
            if not passed:
                failed = rate if failed is None else failed
            elif failed is not None:
                found.append(
                    f"the {service} passed at {rate:,g}/s after failing at {failed:,g}/s: the "
                    "sustained rate stops below the failure; repeat the sweep"
                )
        return found


class Bench:
    """Runs a plan against targets with the parties' prepared traffic."""

    def __init__(
        self,
        parties: Parties,
        targets: Sequence[Target],
        plan: Plan,
        *,
        say: Say,
        progress: Callable[[str, int], ProgressBar] = ProgressBar,
        speed: SpeedProbe = no_speed,
        settle_seconds: float = settle.SETTLE_SECONDS,
    ) -> None:
        self._parties = parties
        self._targets = list(targets)
        self._plan = plan
        self._say = say
        self._progress = progress
        self._speed = speed
        self._settle = settle_seconds  # the longest wait for the bank's page at rest
        self._rotation = 0
        # Per service: the unanswered calls of its last run that the bank may still be
        # running, when nothing said it was at rest after it (module docstring).
        self._carried: dict[Service, int] = {}

    def prepare(self, count: int) -> list[PreparedAuth]:
        """``count`` purchases and their AuthReqs, with a progress bar."""
        merchant = self._parties.merchant
        if merchant is None:
            raise RuntimeError("register the parties first")
        bar = self._progress("signing purchases and AuthReqs", count)
        try:
            prepared = build_authorizations(
                merchant, self._parties.cardholders, self._parties.population, count, bar,
                first=self._rotation,
            )  # fmt: skip
        finally:
            bar.close()
        self._rotation += count
        return prepared

    def _judge(self, target: Target, prepared: Sequence[PreparedAuth]) -> Judge:
        if not target.signed_answers:
            return echo_judge
        merchant = self._parties.merchant
        if merchant is None:
            raise RuntimeError("register the parties first")

        def open_one(index: int, response: authorization_pb2.AuthorizeResponse) -> AuthResult:
            state = prepared[index % len(prepared)].state
            return open_auth_response(
                response, merchant.credentials, state, merchant.trust,
                gateway_identity=merchant.gateway_identity,
            )  # fmt: skip

        return auth_judge(open_one)

    def _fresh(self, prepared: list[PreparedAuth], duration: float) -> list[PreparedAuth]:
        # The wait for the bank at rest comes before the run, and may last its bound.
        ends_ms = time.time_ns() // 1_000_000 + int((self._settle + duration) * 1000)
        if ends_ms - prepared[0].built_ms <= FRESHNESS_BUDGET_MS:
            return prepared
        self._say("prepared AuthReqs would grow stale: preparing a fresh batch")
        return self.prepare(len(prepared))

    def drive(
        self, target: Target, shape: Shape, prepared: list[PreparedAuth], *, warmup: bool = False
    ) -> Tally:
        """One run of ``shape`` against ``target``, tallied."""
        what = "warm-up" if warmup else f"{shape.label} for {shape.duration:g} s"
        self._say(f"{what} against the {target.service}")
        before = settle.at_rest(target.page, self._settle)
        ledger_before = target.ledger()
        processes = target.process_cpu()
        recording = load.run(
            shape, target.access, [p.request for p in prepared], channels=self._plan.channels,
            timeout=self._plan.timeout, reuse=not target.single_use,
            server_cpu=target.server_cpu, spread=target.spread,
        )  # fmt: skip
        speed = self._speed(*_monotonic_window(recording))
        shares = cpu.shares_between(processes, target.process_cpu())
        after = settle.at_rest(target.page, self._settle)
        ledger_after = target.ledger()
        held = None
        if ledger_before is not None and ledger_after is not None:
            held = holds.between(ledger_before, ledger_after, self._parties.population.amount)
        during = bank_page.between(before.reading, after.reading, target.workers)
        during = replace(during, unsettled=settle.unrest(before, after))
        judge = self._judge(target, prepared)
        counted = tally(
            str(target.service), recording, judge, during, process_cpu_shares=shares,
            speed=speed, held=held, carried=self._carried.get(target.service, 0),
            bank=target.single_use,
        )  # fmt: skip
        at_rest = after.reading is not None and after.unrest is None
        self._carried[target.service] = 0 if at_rest else counted.errors + counted.timeouts
        return counted

    def warm_up(self, result: BenchResult) -> None:
        """One AuthReq per cardholder to each target: caches warm, connections made."""
        prepared = self.prepare(len(self._parties.cardholders))
        shape = ClosedLoop(
            min(WARMUP_CONCURRENCY, len(prepared)), WARMUP_SECONDS, limit=len(prepared)
        )
        for target in self._targets:
            result.warmup[target.service] = self.drive(target, shape, prepared, warmup=True)

    def step(self, shape: Shape) -> StepResult:
        """One shape against every target."""
        prepared = self.prepare(self._plan.prepared_for(shape))
        result = StepResult(shape)
        for target in self._targets:
            prepared = self._fresh(prepared, shape.duration)
            result.tallies[target.service] = self.drive(target, shape, prepared)
        return result

    def run(self, setting: dict[str, object]) -> BenchResult:
        """The whole plan."""
        result = BenchResult(setting, self._plan)
        if self._plan.warmup:
            self.warm_up(result)
        closed = self._plan.closed()
        if closed is not None:
            step = self.step(closed)
            result.steps.append(step)
            gateway = step.tallies.get(Service.GATEWAY)
            following = self._plan.at_fraction(gateway.throughput if gateway else 0.0)
            if following is not None:
                result.steps.append(self.step(following))
        for shape in self._plan.open_loops():
            result.steps.append(self.step(shape))
        return result
