"""Pruning to the retention: ``requests`` and ``pi_uses`` worked off batch by batch.

``retention`` says what may go and why; this is the loop that drives it, shared by the
hold sweeper's thread (``sweeper``: every round, when the ledger was given a retention)
and ``setpay bank prune-ledger``. Each batch is one write transaction of its own, of at
most ``batch`` rows, with a pause after a full one, so a backlog (the first prune of an
old ledger) never holds the writer long and takes a small share of its time. An idle
round costs one read. The command works a backlog off to its end; the sweeper gives each
round a budget of batches (``max_batches``) and carries on the next round, so that a
backlog never keeps it from releasing due holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.ledger.retention import RETENTION_BATCH, RETENTION_PAUSE_SECONDS, Pruned

if TYPE_CHECKING:
    from gateway.ledger.ledger import Ledger

PruneObserver = Callable[[str, Pruned], None]
"""Called after each batch with its table and what it did (must be quick, must not raise)."""


@dataclass(frozen=True)
class PruneTotals:
    """Rows one prune deleted, by table, and whether it stopped short of the end."""

    requests: int
    pi_uses: int
    backlog: bool = False
    """True if a table may have rows left to go: its budget ran out (``max_batches``)
    or the prune was stopped before a batch found the end."""


def prune(
    ledger: Ledger,
    retention_days: int,
    *,
    batch: int = RETENTION_BATCH,
    pause_seconds: float = RETENTION_PAUSE_SECONDS,
    max_batches: int | None = None,
    stopping: threading.Event | None = None,
    observer: PruneObserver | None = None,
) -> PruneTotals:
    """Drop what ``retention_days`` lets go, batch by batch, until none is left, each
    table has had ``max_batches`` batches (if given), or ``stopping`` is set. Store errors
    are raised to the caller; batches committed before one stay committed."""
    if max_batches is not None and max_batches < 1:
        raise ValueError("max_batches must be at least 1, or None for no budget")
    stop = stopping or threading.Event()
    requests_left, pi_uses_left = ledger.has_prunable(retention_days)
    totals = {"requests": 0, "pi_uses": 0}
    steps = {"requests": ledger.prune_requests, "pi_uses": ledger.prune_pi_uses}
    backlog = False
    for table, found in (("requests", requests_left), ("pi_uses", pi_uses_left)):
        more, batches = found, 0
        while more and not stop.is_set() and batches != max_batches:
            done = steps[table](retention_days, batch)
            batches += 1
            totals[table] += done.deleted
            if observer is not None:
                observer(table, done)
            # A batch that looked at fewer rows than it could found the end; rows that
            # age past the horizon from now on are the next round's.
            more = done.examined >= batch
            if more and batches != max_batches and stop.wait(pause_seconds):
                break
        backlog = backlog or more
    return PruneTotals(requests=totals["requests"], pi_uses=totals["pi_uses"], backlog=backlog)
