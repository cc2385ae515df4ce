"""The ledger's group commits during a run, read from the bank's metrics page.

A durable commit costs an fsync, and the gateway's ledger carries as many authorizations
per commit as arrive while one is being made (``gateway.ledger.group_commit``). That
number is much of what makes an authorization cheaper in a closed loop than in an open
loop at a lower rate (docs/BENCHMARKS.md). So the bench reports, for each gateway run, the
commits the bank made, the operations they carried and their mean duration, from the
bank's ``setpay_ledger_commit_operations`` and ``setpay_ledger_commit_duration_seconds``
histograms (their ``_count`` and ``_sum``), read before and after the run.

A probe returns None when the page cannot be read; a page without these metrics (a
ledger that has not committed yet) counts as zero, so that the first run still has its
figures. A run whose pages both lack them has no figures at all (another service, or
metrics of a bank that has no such ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clients.loadtest import metrics_page

OPERATIONS = "setpay_ledger_commit_operations"
DURATION = "setpay_ledger_commit_duration_seconds"
_COMMITS = f"{OPERATIONS}_count"
_OPERATIONS = f"{OPERATIONS}_sum"
_SECONDS = f"{DURATION}_sum"
_NAMES = frozenset({_COMMITS, _OPERATIONS, _SECONDS})


@dataclass(frozen=True)
class CommitCounts:
    """The bank's commit counters at one moment (``seen``: the page had them)."""

    commits: float = 0.0
    operations: float = 0.0
    seconds: float = 0.0
    seen: bool = False


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


CommitProbe = Callable[[], CommitCounts | None]
"""The bank's commit counters now (None when they cannot be read)."""


def read(text: str) -> CommitCounts:
    """The commit counters on a metrics page (zero and not ``seen`` when absent)."""
    found = metrics_page.sums(text, _NAMES)
    return CommitCounts(
        commits=found.get(_COMMITS, 0.0),
        operations=found.get(_OPERATIONS, 0.0),
        seconds=found.get(_SECONDS, 0.0),
        seen=bool(found),
    )


def probe_of(url: str) -> CommitProbe:
    """A probe of the commit counters on the metrics page at ``url``."""
    metrics_page.check_url(url)

    def probe() -> CommitCounts | None:
        text = metrics_page.fetch(url)
        return None if text is None else read(text)

    return probe


def no_probe() -> CommitCounts | None:
    """Commits unknown (a reference service, or a bank without a metrics page)."""
    return None


def between(before: CommitCounts | None, after: CommitCounts | None) -> LedgerCommits | None:
    """The commits made between two readings (None when either is missing or neither
    saw the metrics, or when the counters went back: the bank restarted meanwhile)."""
    if before is None or after is None or not (before.seen or after.seen):
        return None
    commits = round(after.commits - before.commits)
    operations = round(after.operations - before.operations)
    seconds = after.seconds - before.seconds
    if commits < 0 or operations < 0 or seconds < 0:
        return None
    return LedgerCommits(commits, operations, seconds)
