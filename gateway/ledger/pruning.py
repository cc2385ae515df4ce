"""Pruning to the retention: ``requests`` and ``pi_uses`` worked off batch by batch.

``retention`` says what may go and why; this is the loop that drives it, shared by the
hold sweeper's thread (``sweeper``: every round, when the ledger was given a retention)
and ``setpay bank prune-ledger``. Each batch is one write transaction of its own, of at
most ``batch`` rows, with a pause after a full one, so a backlog (the first prune of an
old ledger) never holds the writer long and takes a small share of its time. An idle
round costs one read.
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
    """Rows one prune deleted, by table."""

    requests: int
    pi_uses: int


def prune(
    ledger: Ledger,
    retention_days: int,
    *,
    batch: int = RETENTION_BATCH,
    pause_seconds: float = RETENTION_PAUSE_SECONDS,
    stopping: threading.Event | None = None,
    observer: PruneObserver | None = None,
) -> PruneTotals:
    """Drop what ``retention_days`` lets go, batch by batch, until none is left (or
    ``stopping`` is set). Store errors are raised to the caller; batches committed
    before one stay committed."""
    stop = stopping or threading.Event()
    requests_left, pi_uses_left = ledger.has_prunable(retention_days)
    totals = {"requests": 0, "pi_uses": 0}
    steps = {"requests": ledger.prune_requests, "pi_uses": ledger.prune_pi_uses}
    for table, found in (("requests", requests_left), ("pi_uses", pi_uses_left)):
        more = found
        while more and not stop.is_set():
            done = steps[table](retention_days, batch)
            totals[table] += done.deleted
            if observer is not None:
                observer(table, done)
            # A batch that looked at fewer rows than it could found the end; rows that
            # age past the horizon from now on are the next round's.
            more = done.examined >= batch and not stop.wait(pause_seconds)
    return PruneTotals(requests=totals["requests"], pi_uses=totals["pi_uses"])
