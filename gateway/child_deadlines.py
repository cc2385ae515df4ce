"""When the supervisor's children (``gateway.workers``) are due: to serve once forked, and
to be gone once the bank is stopping; and the killing of those past it.

Starting. Every child must be serving within WORKER_START_SECONDS of its fork
(``late_starts``): opening a PKCS#11 token and logging in, serialized across processes,
and loading the PKI take a few seconds at most. A replacement worker still not serving
then, another worker serving, is killed and started again as one whose start failed of a
cause that passes by itself (``late_fault``, ``gateway.restarts``): a token call that
hangs is an outage of the token, not the operator's to fix, and the healthy workers
serve meanwhile. Any other child late stops the bank, as at its first start.

Stopping. A serving child gets its NOT_SERVING notice, its grace period and
STOP_MARGIN_SECONDS to close (``stop_seconds``) from the bank's stop. One still starting
is given until its start is due first (``stop_deadline``), but a retried replacement
is not: its start failed or hung before, and a stop is not held for it. The ledger
process, asked to stop only once the last worker has gone, is due no earlier than any
worker (``StopDeadlines``). A child past its deadline is killed (``StopDeadlines.kill_stragglers``):
an error, but for a replacement that never served (``spared_at_stop``: a worker's, or a
ledger process started again once the bank had served), whose kill fails no stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Sequence

from gateway.child import LEDGER_INDEX, PASSING_MARK, WatchedChild
from gateway.config import BankConfig

log = logging.getLogger("setpay.workers")

# Every worker must be serving this long after it was forked: opening a PKCS#11 token and
# logging in (serialized across processes) and loading the PKI take a few seconds at most.
WORKER_START_SECONDS = 60.0
# After the grace period, workers get this long to close key sessions and the ledger.
STOP_MARGIN_SECONDS = 10.0


def stop_seconds(config: BankConfig) -> float:
    """How long a serving child may take to stop: notice, grace, closing margin."""
    return config.not_serving_seconds + config.grace_seconds + STOP_MARGIN_SECONDS


def stop_deadline(
    bank_deadline: float,
    started: float,
    ready_at: float | None,
    stop: float,
    *,
    retry: bool = False,
) -> float:
    """When a child must be gone, the bank being asked to stop by ``bank_deadline``.

    One still starting is never killed for the stop before its start is due
    (WORKER_START_SECONDS after its fork): it may be logging in to the token, which other
    processes wait for and which a kill can leave half written. It acts on the stop once it
    serves, and from then on gets ``stop`` seconds (its notice, grace and closing margin),
    as it would have had if it had served when the stop began. A replacement retried
    after its index failed to start (``retry``) is due with the bank: its start failed or
    hung before, and a stop that waited for it would hold every other worker's end.
    """
    if ready_at is None:
        return bank_deadline if retry else max(bank_deadline, started + WORKER_START_SECONDS)
    return max(bank_deadline, ready_at + stop)


def late_starts(children: Sequence[WatchedChild], now: float) -> list[WatchedChild]:
    """The children not serving WORKER_START_SECONDS after their fork (and not killed:
    one killed for it is late until reaped)."""
    return [
        c
        for c in children
        if not c.ready and not c.killed and now - c.started > WORKER_START_SECONDS
    ]


def spared(child: WatchedChild) -> bool:
    """Whether ``child`` is a replacement worker that never served: one stuck in its start
    is killed and retried, not the bank stopped, and its end as the bank stops, killed or
    of a start fault that passes by itself, is no failed stop. One that served is a worker
    like any other: stuck past its stop, it fails the stop."""
    return child.replaces and not child.ready and child.index != LEDGER_INDEX


def spared_at_stop(child: WatchedChild) -> bool:
    """Whether ``child``'s end as the bank stops, killed or of a start fault that passes by
    itself, fails no stop: a replacement worker that never served (``spared``), or a
    ledger process started again once the bank had served that never served. That one
    commits nothing, and the fault it meets is the ledger busy (another program holding
    its write lock: ``gateway.restarts``), which may end its try as the workers drain:
    counted as failed, a clean stop during a ledger outage exited 1. Only at the stop: a
    ledger process late in its start still stops the bank (``late_starts``)."""
    ledger_retried = child.index == LEDGER_INDEX and child.replaces and not child.ready
    return spared(child) or ledger_retried


def late_fault() -> str:
    """The fault a replacement killed for not serving in time is given, as a child reports
    one on its ready pipe (``gateway.child.fault_line``): one that passes by itself."""
    return f"{PASSING_MARK}not serving {WORKER_START_SECONDS:.0f} s after its start: killed"


class StopDeadlines:
    """The bank's stop, asked for: when each child must be gone, and the killing of those
    that are not."""

    def __init__(self, bank_deadline: float, stop: float) -> None:
        self.bank_deadline = bank_deadline  # when serving children are due
        self._stop = stop  # ``stop_seconds``
        self._ledger_due = 0.0  # the ledger process's, no earlier than any worker's

    def dues(self, children: Sequence[WatchedChild]) -> dict[int, float]:
        """When each child must be gone (``stop_deadline``), by pid. The ledger process is
        asked to stop only once the last worker is gone, so it is due no earlier than any
        worker."""
        due = {
            c.pid: stop_deadline(
                self.bank_deadline, c.started, c.ready_at, self._stop, retry=c.retry
            )
            for c in children
        }
        for ledger in (c for c in children if c.index == LEDGER_INDEX):
            # The latest seen, kept: the workers it outlives may be gone by the time it
            # is asked to stop.
            self._ledger_due = max(self._ledger_due, *due.values())
            due[ledger.pid] = self._ledger_due
        return due

    def last_due(self, children: Sequence[WatchedChild]) -> float:
        """When the last of ``children`` is due (none left: the bank's deadline)."""
        return max(self.dues(children).values(), default=self.bank_deadline)

    def kill_stragglers(self, now: float, children: Sequence[WatchedChild]) -> list[WatchedChild]:
        """Kill each child past its ``stop_deadline``; those killed now."""
        due = self.dues(children)
        killed = []
        for child in children:
            if now > due[child.pid] and not child.killed:
                if spared_at_stop(child):  # its kill fails no stop (``gateway.workers``)
                    log.warning(
                        "%s (pid %d), a replacement that never served, did not stop: "
                        "killing it", child.name, child.pid,
                    )  # fmt: skip
                else:
                    log.error("%s (pid %d) did not stop: killing it", child.name, child.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                child.killed = True
                killed.append(child)
        return killed
