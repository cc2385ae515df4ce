"""What a bank's metrics page says about one run: its ledger's commits and its workers' calls.

Read before and after each run, from the bank's own Prometheus page (``--metrics`` for a
bank the bench spawns, ``--metrics-url`` for a target), once per reading.

**Commits.** A durable commit costs an fsync, and the gateway's ledger carries as many
authorizations per commit as arrive while one is being made (``gateway.ledger.group_commit``).
That number is much of what makes an authorization cheaper in a closed loop than in an
open loop at a lower rate (docs/BENCHMARKS.md). So the bench reports the commits the bank
made, the operations they carried and their mean duration, from the bank's
``setpay_ledger_commit_operations`` and ``setpay_ledger_commit_duration_seconds``
histograms (their ``_count`` and ``_sum``).

**Workers.** SO_REUSEPORT gives each TCP connection to one worker, at random, and every
call on that connection goes to it (DESIGN.md 5.4). With a few channels, one worker may
get most of them, or all: with 8 channels and 2 workers, one time in 128. The run then
measures one worker, not the bank. So the bench reports the calls each worker handled
(``setpay_worker_rpcs_total{worker}``), counting a worker the page never names as one
that handled none.

**Calls in flight.** The gauge of calls being handled (``setpay_rpc_in_flight``, summed
over methods and workers) tells when the bank is at rest (``settle``): a page read while
a call the bench gave up on still runs would count it in the wrong run.

A probe returns None when the page cannot be read; a page without the commit metrics (a
ledger that has not committed yet) counts as zero, so that the first run still has its
figures. A run whose pages both lack them has no figures at all (another service, or
metrics of a bank that has no such ledger).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from clients.loadtest import metrics_page

OPERATIONS = "setpay_ledger_commit_operations"
DURATION = "setpay_ledger_commit_duration_seconds"
WORKER_CALLS = "setpay_worker_rpcs_total"
# The gateway's count of authorization decisions it answered (approved or declined),
# counted before the answer leaves the handler, so it never trails the answers.
DECISIONS = "setpay_authorizations_total"
# ... and the label that says which decision, with the value of an approval: the approvals
# are held to the bench's verified approvals, not only the decisions to its answers.
OUTCOME = "outcome"
APPROVED = "approved"
# The gateway's calls between their handler's start and its end, per method. It appears on
# the page at the first call: absent, nothing has been in flight.
IN_FLIGHT = "setpay_rpc_in_flight"
_COMMITS = f"{OPERATIONS}_count"
_OPERATIONS = f"{OPERATIONS}_sum"
_SECONDS = f"{DURATION}_sum"
_COMMIT_NAMES = frozenset({_COMMITS, _OPERATIONS, _SECONDS})


@dataclass(frozen=True)
class CommitCounts:
    """The bank's commit counters at one moment (``seen``: the page had them)."""

    commits: float = 0.0
    operations: float = 0.0
    seconds: float = 0.0
    seen: bool = False


@dataclass(frozen=True)
class Reading:
    """The bank's page at one moment: commit counters, calls per worker index, decisions,
    the calls being handled, and the decisions that approved (None: no decision series)."""

    commits: CommitCounts = CommitCounts()
    worker_calls: Mapping[str, float] = field(default_factory=dict)
    decisions: float | None = None
    in_flight: float = 0.0
    approvals: float | None = None


@dataclass(frozen=True)
class LedgerCommits:
    """What the ledger committed during one run."""

    commits: int
    operations: int
    seconds: float

    @property
    def operations_per_commit(self) -> float | None:
        """Operations a commit carried on average (None without a commit)."""
        return self.operations / self.commits if self.commits else None

    @property
    def mean_commit_ms(self) -> float | None:
        """A commit's mean duration, milliseconds (None without a commit)."""
        return self.seconds / self.commits * 1000.0 if self.commits else None

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON form."""
        return {
            "commits": self.commits,
            "operations": self.operations,
            "operations_per_commit": self.operations_per_commit,
            "mean_commit_ms": self.mean_commit_ms,
        }


@dataclass(frozen=True)
class WorkerCalls:
    """The calls each worker handled during one run, by worker index; ``expected``: the
    workers the bench was told the bank runs (the page may name more)."""

    calls: tuple[int, ...]
    expected: int | None = None

    @property
    def total(self) -> int:
        """Calls handled by all the workers."""
        return sum(self.calls)

    @property
    def shares(self) -> tuple[float, ...]:
        """Each worker's part of the calls (zeros when there were none)."""
        total = self.total
        return tuple(c / total if total else 0.0 for c in self.calls)

    @property
    def idle(self) -> tuple[int, ...]:
        """The indices of the workers that handled no call."""
        return tuple(i for i, c in enumerate(self.calls) if c == 0)


@dataclass(frozen=True)
class Activity:
    """What the page says happened during one run (None where it says nothing)."""

    ledger: LedgerCommits | None = None
    workers: WorkerCalls | None = None
    #: Authorization decisions the gateway answered (``setpay_authorizations_total``).
    decisions: int | None = None
    #: Those of them that approved (its ``outcome="approved"`` series).
    approvals: int | None = None
    #: Why a reading was taken while the bank was not at rest (``settle``): the figures
    #: above may count calls of the run before or miss some of this one.
    unsettled: tuple[str, ...] = ()


PageProbe = Callable[[], Reading | None]
"""The bank's page now (None when it cannot be read)."""


def read(text: str) -> Reading:
    """The counters on a metrics page (commit counters zero and not ``seen`` when absent)."""
    found = metrics_page.sums(text, _COMMIT_NAMES)
    commits = CommitCounts(
        commits=found.get(_COMMITS, 0.0),
        operations=found.get(_OPERATIONS, 0.0),
        seconds=found.get(_SECONDS, 0.0),
        seen=bool(found),
    )
    counted = metrics_page.sums(text, frozenset({DECISIONS, IN_FLIGHT}))
    decisions = counted.get(DECISIONS)
    by_outcome = metrics_page.sums_by_label(text, DECISIONS, OUTCOME)
    return Reading(
        commits,
        metrics_page.sums_by_label(text, WORKER_CALLS, "worker"),
        decisions,
        counted.get(IN_FLIGHT, 0.0),
        # No approval yet is a count of zero once the page has the decisions' series.
        None if decisions is None else by_outcome.get(APPROVED, 0.0),
    )


def probe_of(url: str) -> PageProbe:
    """A probe of the metrics page at ``url``."""
    metrics_page.check_url(url)

    def probe() -> Reading | None:
        text = metrics_page.fetch(url)
        return None if text is None else read(text)

    return probe


def no_probe() -> Reading | None:
    """Nothing known (a reference service, or a bank without a metrics page)."""
    return None


def between(before: Reading | None, after: Reading | None, workers: int) -> Activity:
    """What happened between two readings of a bank with ``workers`` workers."""
    if before is None or after is None:
        return Activity()
    return Activity(
        _commits_between(before.commits, after.commits),
        _calls_between(before.worker_calls, after.worker_calls, workers),
        _grown(before.decisions, after.decisions),
        _grown(before.approvals, after.approvals),
    )


def _grown(before: float | None, after: float | None) -> int | None:
    """A counter's growth; None when either reading lacks it, or it went back (the bank
    restarted meanwhile)."""
    if before is None or after is None:
        return None
    grown = round(after - before)
    return grown if grown >= 0 else None


def _commits_between(before: CommitCounts, after: CommitCounts) -> LedgerCommits | None:
    """None when neither reading saw the metrics, or when the counters went back (the
    bank restarted meanwhile)."""
    if not (before.seen or after.seen):
        return None
    commits = round(after.commits - before.commits)
    operations = round(after.operations - before.operations)
    seconds = after.seconds - before.seconds
    if commits < 0 or operations < 0 or seconds < 0:
        return None
    return LedgerCommits(commits, operations, seconds)


def _calls_between(
    before: Mapping[str, float], after: Mapping[str, float], workers: int
) -> WorkerCalls | None:
    """Every worker up to the highest the page names or ``workers``, whichever is more;
    None when the page has no worker counters, names a worker that is not an index, or
    a counter went back."""
    if not after or not all(name.isdigit() for name in after):
        return None
    count = max(workers, 1 + max(int(name) for name in after))
    indices = [str(i) for i in range(count)]
    calls = tuple(round(after.get(i, 0.0) - before.get(i, 0.0)) for i in indices)
    if any(c < 0 for c in calls):
        return None
    return WorkerCalls(calls, expected=workers)
