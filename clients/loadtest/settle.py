"""The bank's page read at rest: once no call the bench sent is still running in it.

The gateway does not check a call's deadline. A call the bench timed out (or gave up on)
runs on in the bank until its handler returns, and is counted on the page then: its
worker's call and its decision. Read while such a call still runs, the page counts it in
whichever run's window it lands in: a clean run after a run with timeouts would see a
decision and a worker call more than it verified and sent, and fail "every request
accounted for" although nothing went wrong. So each reading that opens or closes a run's
window (``bench.Bench.drive``) waits until the bank is at rest, and the late calls count
in the run that sent them.

At rest: two readings ``SETTLE_POLL_SECONDS`` apart, both with no call in flight (the
gauge a call is on from its handler's start to its end) and the same counts of worker
calls and decisions. The gauge alone would not do: a call queued in a worker's pool waits
for a thread and is on no gauge, and between one handler's end and the next's start the
gauge may read zero; a queued call that ran between the two readings moved the counts. A
queued call whose deadline passed before a thread took it is dropped unrun by gRPC, and
counted nowhere, as the bench's bounds for a run with timeouts allow.

The wait is bounded (``SETTLE_SECONDS``). When the bound passes, the reading is taken as
it is, with the reason (``Settled.unrest``), and the run's tally says DOUBT: the bank's
counts are shown, not held to the bench's, neither failed nor passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from clients.loadtest.bank_page import PageProbe, Reading

# The longest wait for the bank to come to rest. A call runs on after the bench gave up
# only as long as its handler's slowest waits: a ledger commit behind a busy database
# (SQLite's busy timeout is 5 s), a token's re-login, or a backlog of queued calls (a
# worker's max_concurrent_rpcs, 256 by default, drained at hundreds a second). Twice the
# longest of those, and a call still running is stuck, not slow: waiting longer would stall
# the bench on it, and the run's accounting is in doubt either way.
SETTLE_SECONDS = 10.0
# The interval between two readings of the page while waiting. A reading costs the bank's
# supervisor a merge of its workers' metric files, a few milliseconds; ten a second is
# little beside a run's load, and a bank already at rest is confirmed in a tenth of a
# second.
SETTLE_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Settled:
    """A reading of the page (None: none could be made) and, when the bank had not come to
    rest within the bound, why."""

    reading: Reading | None
    unrest: str | None = None


def at_rest(
    probe: PageProbe,
    bound: float = SETTLE_SECONDS,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Settled:
    """The page once the bank is at rest (module docstring), or after ``bound`` seconds as
    it is, with the reason."""
    first = probe()
    if first is None:
        return Settled(None)
    give_up = clock() + bound
    while True:
        sleep(SETTLE_POLL_SECONDS)
        second = probe()
        if second is None:
            return Settled(None)
        if _quiet(first, second):
            return Settled(second)
        if clock() >= give_up:
            return Settled(second, _why(second, bound))
        first = second


def unrest(before: Settled, after: Settled) -> tuple[str, ...]:
    """Why the readings around a run were not taken at rest (empty when both were)."""
    found = []
    if before.unrest is not None:
        found.append(f"before the run: {before.unrest}")
    if after.unrest is not None:
        found.append(f"after the run: {after.unrest}")
    return tuple(found)


def _quiet(first: Reading, second: Reading) -> bool:
    return (
        first.in_flight == second.in_flight == 0
        and first.decisions == second.decisions
        and first.worker_calls == second.worker_calls
    )


def _why(last: Reading, bound: float) -> str:
    if last.in_flight:
        calls = round(last.in_flight)
        return f"{calls:,} call{'s' if calls != 1 else ''} still in flight after {bound:g} s"
    return f"its counts still moving after {bound:g} s"
