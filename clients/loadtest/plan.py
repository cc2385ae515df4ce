"""What a bench run does, step by step: the traffic shapes and the services they hit.

Steps, in order:

* ``--concurrency C``: a closed loop of C callers (the saturation throughput); with
  ``--load-fraction F`` it is followed by an open loop at F times the throughput the
  gateway reached, which is how the targets are stated ("p99 at 80 % of max").
* ``--rate R`` or ``--rates a,b,c``: an open loop at each rate (a sweep when several).

Every step runs against the gateway, then (``--ceiling``) the crypto ceiling and the echo
service, with the same shape, the same channels count and the same request bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from clients.loadtest import bank_page, cpu, holds
from clients.loadtest.channels import MAX_CHANNELS, GatewayAccess
from clients.loadtest.errors import PlanError
from clients.loadtest.load import (
    MAX_CONCURRENCY,
    MAX_RATE,
    ClosedLoop,
    OpenLoop,
    ServerCpu,
    Shape,
    scheduled,
)
from clients.loadtest.spread import WorkerSpread

# A closed loop cannot know beforehand how many requests it will send; the gateway's PIs
# are single-use, so it is given enough for this many per second (above what two cores
# can authorize) times its duration. ``--requests`` overrides it; a run that still runs
# dry says so and counts as not clean.
CLOSED_LOOP_POOL_RATE = 5_000
# Largest number of AuthReqs prepared for one step: about a minute of preparation and
# a few hundred megabytes of answers kept for the tally.
MAX_PREPARED = 200_000
# Longest step: AuthReqs carry their signing date and the gateway refuses them after
# five minutes (setcore.freshness); preparation plus the three services must fit.
MAX_DURATION_SECONDS = 60.0
# Longest per-call deadline: beyond this a "latency" is an outage.
MAX_TIMEOUT_SECONDS = 60.0


class Service(StrEnum):
    """The services a step runs against."""

    GATEWAY = "gateway"
    CEILING = "ceiling"
    ECHO = "echo"


@dataclass(frozen=True)
class Target:
    """A service to drive, how to reach it, how to watch its CPU (in all, and per child
    process when the bench started it) and which of its workers each connection reached
    (when the bench started it), and its metrics page (its ledger's commits and its
    ``workers`` workers' calls), and its ledger (the holds it makes for the bench's
    merchant: a bank only)."""

    service: Service
    access: GatewayAccess
    server_cpu: ServerCpu
    page: bank_page.PageProbe = bank_page.no_probe
    workers: int = 1
    process_cpu: cpu.ProcessCpuProbe = cpu.no_process_probe
    spread: WorkerSpread | None = None  # its workers' connections, when the bench can see them
    ledger: holds.LedgerProbe = holds.no_ledger

    @property
    def single_use(self) -> bool:
        """The gateway refuses a PI twice; the reference services keep no replay store."""
        return self.service is Service.GATEWAY

    @property
    def signed_answers(self) -> bool:
        """Answers are AuthRes to open and verify (the echo's are fixed bytes)."""
        return self.service is not Service.ECHO


@dataclass(frozen=True)
class Plan:
    """The steps of a run and the knobs they share."""

    duration: float
    rates: tuple[float, ...] = ()
    concurrency: int | None = None
    load_fraction: float | None = None
    channels: int = 8
    timeout: float = 5.0
    requests: int | None = None
    p99_max_ms: float = 50.0
    warmup: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.duration <= MAX_DURATION_SECONDS:
            raise PlanError(f"duration must be above 0 and at most {MAX_DURATION_SECONDS:.0f} s")
        if not self.rates and self.concurrency is None:
            raise PlanError("give --rate/--rates (open loop) or --concurrency (closed loop)")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise PlanError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise PlanError(f"channels must be between 1 and {MAX_CHANNELS}")
        for rate in self.rates:
            if not 0 < rate <= MAX_RATE:
                raise PlanError(f"rates must be above 0 and at most {MAX_RATE:.0f}/s")
        if self.load_fraction is not None:
            if self.concurrency is None:
                raise PlanError("--load-fraction needs --concurrency (the run that finds max)")
            if not 0 < self.load_fraction <= 1:
                raise PlanError("--load-fraction must be above 0 and at most 1")
        if not 0 < self.timeout <= MAX_TIMEOUT_SECONDS:
            raise PlanError(f"timeout must be above 0 and at most {MAX_TIMEOUT_SECONDS:.0f} s")
        if self.requests is not None and not 1 <= self.requests <= MAX_PREPARED:
            raise PlanError(f"requests must be between 1 and {MAX_PREPARED}")
        if not 0 < self.p99_max_ms < math.inf:
            raise PlanError("--p99-max must be a positive number of milliseconds")
        for rate in self.rates:
            if scheduled(rate, self.duration) > MAX_PREPARED:
                raise PlanError(f"{rate:g}/s for {self.duration:g} s is more than "
                                f"{MAX_PREPARED} requests")  # fmt: skip

    @property
    def has_open_loops(self) -> bool:
        """Whether the plan has open-loop steps (fixed rates, or a fraction of the closed
        loop's throughput): what a plot of latency against rate needs."""
        return bool(self.rates) or self.load_fraction is not None

    def closed(self) -> ClosedLoop | None:
        """The closed-loop step, if any."""
        if self.concurrency is None:
            return None
        return ClosedLoop(self.concurrency, self.duration)

    def open_loops(self) -> list[OpenLoop]:
        """The open-loop steps at fixed rates."""
        return [OpenLoop(rate, self.duration) for rate in self.rates]

    def at_fraction(self, throughput: float) -> OpenLoop | None:
        """The open loop at ``load_fraction`` of a measured throughput (None if not asked,
        or if that rate, to a tenth per second, is zero)."""
        if self.load_fraction is None:
            return None
        rate = round(throughput * self.load_fraction, 1)
        return OpenLoop(rate, self.duration) if rate > 0 else None

    def prepared_for(self, shape: Shape) -> int:
        """How many single-use AuthReqs a step needs."""
        if isinstance(shape, OpenLoop):
            return shape.requests
        if self.requests is not None:
            return self.requests
        return min(MAX_PREPARED, math.ceil(shape.duration * CLOSED_LOOP_POOL_RATE))
