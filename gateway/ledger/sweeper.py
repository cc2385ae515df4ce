"""The hold sweeper: posts the release of every hold past its expiry, in bounded batches.

A decision releases the due holds of the cards it touches (``expiry``); the sweeper
releases the rest, the holds of cards no decision touches, so that merchants' pending
balances and the books' pending sums come down when the holds expire, and a decision
seldom finds anything to release. When the ledger was given a retention
(``LedgerConfig.retention_days``), each round then prunes ``requests`` and ``pi_uses`` to
it (``pruning``, ``retention``), at most ``PRUNE_ROUND_BATCHES`` batches a table: a
pruning backlog (the first round after an upgrade, or after retention_days was lowered,
may find millions of rows) is worked off over many rounds, the next one starting at once
instead of after the interval, and every round releases the due holds first. Each batch
is one transaction of its own (at most ``batch`` holds), with a pause after a full one,
so a backlog is worked off without holding the writer long or taking much of its time.

One sweeper per bank is enough, and more are harmless: ``expiry.expire_holds`` locks each
card and reads each hold again under the lock, so a hold released meanwhile (by a
decision, another sweeper, another host) is skipped. An idle round costs one read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.ledger.errors import StoreUnavailable
from gateway.ledger.limits import EXPIRE_BATCH
from gateway.ledger.pruning import prune
from gateway.ledger.retention import MAX_RETENTION_BATCH, RETENTION_BATCH

if TYPE_CHECKING:
    from gateway.ledger.ledger import Ledger

log = logging.getLogger("setpay.ledger")

# How often the sweeper looks for due holds. Holds live for days; a minute's lag leaves a
# released hold on a merchant's pending balance for a minute, while the card's own
# decisions release it at once.
SWEEP_INTERVAL_SECONDS = 60.0
# Holds released in one transaction: about a hundred postings (5 statements each), a few
# milliseconds of the writer, so requests queued behind a batch wait no longer than
# behind a handful of authorizations.
SWEEP_BATCH = 100
# The pause after a full batch: with a few milliseconds a batch, a backlog takes about a
# tenth of the writer's time until it is gone.
SWEEP_PAUSE_SECONDS = 0.05
# Pruning batches one round runs per table before it leaves the rest to the next round.
# At the pace ``retention`` measured (a few ms a batch of ``RETENTION_BATCH`` rows and a
# 20 ms pause) 200 batches, 10,000 rows, take about 5 s a table, so a round with a backlog
# in both tables releases due holds again within seconds, and within the minute
# OPERATIONS promises on a store ten times slower. A round that used its budget starts
# the next at once, so a backlog still goes at the pruning's own pace.
PRUNE_ROUND_BATCHES = 200

BatchObserver = Callable[[int], None]
"""Called after each batch with how many holds it released (metrics hook; must not raise)."""


def _check_count(name: str, value: int, most: int, what: str) -> None:
    """ValueError unless ``value`` is an integer from 1 to ``most``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValueError(f"{name} must be 1 to {most} {what} a transaction")


class HoldSweeper:
    """Releases a ledger's due holds (and prunes to its retention): one ``sweep`` or
    ``run_round`` on demand, or a round every interval on a thread of its own (``start``,
    ``stop``)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        interval_seconds: float = SWEEP_INTERVAL_SECONDS,
        batch: int = SWEEP_BATCH,
        pause_seconds: float = SWEEP_PAUSE_SECONDS,
        observer: BatchObserver | None = None,
        prune_batch: int = RETENTION_BATCH,
        prune_batches: int = PRUNE_ROUND_BATCHES,
    ) -> None:
        """Sweep ``ledger`` (as of its clock), ``batch`` holds a transaction; prune to its
        retention ``prune_batch`` rows a transaction, ``prune_batches`` batches a table
        a round."""
        if not interval_seconds > 0 or not pause_seconds >= 0:
            raise ValueError("the interval must be positive and the pause not negative")
        if prune_batches < 1:
            raise ValueError("a round must be allowed at least one pruning batch")
        # Refused here, not at each round: the ledger would refuse such a batch every
        # round, and the thread, which only logs a round's failure, would release nothing.
        _check_count("batch", batch, EXPIRE_BATCH, "holds")
        _check_count("prune_batch", prune_batch, MAX_RETENTION_BATCH, "rows")
        self._ledger = ledger
        self._interval = interval_seconds
        self._batch = batch
        self._pause = pause_seconds
        self._observer = observer
        self._prune_batch = prune_batch
        self._prune_batches = prune_batches
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Release the holds due now, batch by batch, until none is left (or ``stop``);
        return how many were released. Store errors are raised to the caller."""
        released = 0
        while not self._stopping.is_set() and self._ledger.has_due_holds():
            count = self._ledger.expire_holds(self._batch)
            released += count
            if self._observer is not None:
                self._observer(count)
            # Fewer than a batch: the rest were released meanwhile, or none is left; a
            # hold that falls due from now on is the next round's.
            if count < self._batch or self._stopping.wait(self._pause):
                break
        return released

    def start(self) -> HoldSweeper:
        """Sweep now, then every interval (at once while pruning has a backlog), on a daemon
        thread until ``stop``."""
        self._thread = threading.Thread(target=self._run, name="hold-sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sweeping; return once a batch under way has committed."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def run_round(self) -> bool:
        """One round of the thread: release the due holds, then prune to the ledger's
        retention if it was given one, within the round's budget. True if pruning left
        rows for the next round. Store errors are raised to the caller."""
        released = self.sweep()
        if released:
            log.info("hold sweeper: released %d expired holds", released)
        return self._prune()

    def _prune(self) -> bool:
        """Drop what the ledger's retention lets go (``pruning``), if it was given one, at
        most ``prune_batches`` batches a table; True if rows may be left."""
        days = self._ledger.retention_days
        if days is None:
            return False
        pruned = prune(
            self._ledger,
            days,
            batch=self._prune_batch,
            max_batches=self._prune_batches,
            stopping=self._stopping,
        )
        if pruned.requests or pruned.pi_uses:
            log.info(
                "hold sweeper: pruned %d stored answers and %d used XIDs past %d days%s",
                pruned.requests, pruned.pi_uses, days,
                " (more next round)" if pruned.backlog else "",
            )  # fmt: skip
        return pruned.backlog

    def _run(self) -> None:
        while True:
            backlog = False
            try:
                backlog = self.run_round()
            except StoreUnavailable as exc:
                # The ledger's outage is answered elsewhere (health, UNAVAILABLE); the
                # next round tries again.
                log.warning("hold sweeper: the ledger is unavailable (%s)", type(exc).__name__)
            except Exception as exc:  # noqa: BLE001  a sweeper that died would stop silently
                log.error(
                    "hold sweeper: %s; next round in %s s", type(exc).__name__, self._interval
                )
            # A pruning backlog is carried on after the pause of a batch, not the interval:
            # the round's budget bounds how long due holds wait, not how fast it goes.
            if self._stopping.wait(self._pause if backlog else self._interval):
                return
