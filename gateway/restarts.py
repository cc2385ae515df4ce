"""When the supervisor (``gateway.workers``) starts again a child that died while serving,
and when it gives up instead.

Back-off, per worker index (``Backoff``). A worker's first death, or one after it served
STEADY_SECONDS, is followed by a new worker at once: a rare crash costs its index only the
new worker's start. Each further death within STEADY_SECONDS of serving waits longer,
FIRST_BACKOFF_SECONDS doubling up to MAX_BACKOFF_SECONDS: a request that crashes its
worker, retried by its clients, then finds that index down, not a new worker to crash
six times in three seconds. With a ledger process, an index that is due waits too while
a restarted ledger process does not serve yet (``Restarts.due``).

Giving up. While another worker serves, a death never stops the bank: stopping would end
the healthy workers too, and every connection they hold, for one index's crash loop; that
index goes on being restarted, at once after its first quick death, then after the
back-off's waits (FIRST_BACKOFF_SECONDS doubling, at most MAX_BACKOFF_SECONDS), each death
logged at ERROR and counted (``setpay_worker_restarts_total``). A death that leaves no worker
serving spends one restart of the bank's ``RestartBudget``, MAX_RESTARTS within
RESTART_WINDOW_SECONDS, and so does every death of the ledger process, which every worker
needs: one beyond it stops the bank (exit 1), as a bank serving nothing in a crash loop is
the operator's to look at.

A replacement that cannot start. A worker started again once the bank has served
(``opened``) that fails before it serves of a fault that passes by itself
(``gateway.child.passes``: the token away, the ledger away, its process killed or
restarting as the replacement dialled it, the database server not answering, or the
ledger busy, its write lock or connection slots held by others) is started again after
the same back-off. While another worker serves, that never stops the bank: the healthy
workers serve meanwhile. With no worker serving (one worker, or all died together, as
when the ledger process died with them), it is started again after its back-off until
nothing has served for RESTART_WINDOW_SECONDS since the last worker served; a failure
after that stops the bank, saying how long nothing served and the last cause. Its wait
before each try then ends at the window's end at the latest, though never sooner than
FIRST_BACKOFF_SECONDS after the failure (``_start_failed``). So the bank stops within
RESTART_WINDOW_SECONDS of the last worker serving plus one start's time, the start of
the try whose failure stops it (a start failing after t s: by 60 + t s), and at most
FIRST_BACKOFF_SECONDS more if the try before failed in the window's last half second; a
start that hangs is killed WORKER_START_SECONDS after its fork, which with nothing
serving stops the bank (``gateway.child_deadlines``). The window is judged as a try
fails: with its back-off uncut, a try failing at 59 s waited up to MAX_BACKOFF_SECONDS
more, and a lone worker whose start failed after 4 s stopped the bank after 93.5 s with
nothing served. A start failure that passes spends nothing of the ``RestartBudget``:
charged one restart each, four workers dying with the ledger process (one death, the
ledger process's, and four replacements failing as it came back) stopped the bank though
the ledger process served again at once, and a lone worker, its waits 0.5, 1, 2 and 4 s,
was given some 12 s of a minute's outage. A death with nothing serving still spends one
restart, as above. Any other start failure stops the bank at once, as at its first
start: a refused PIN (offered again at each start wherever its refusal could not be
recorded: a PIN from the environment, a record that could not be written, which would
lock a real HSM's user PIN), a damaged or foreign ledger, a password the database
refuses do not pass by themselves, and starting again would fail again. So does any
start failure at the bank's first start. The ledger process, started again once the
bank has served, that fails of the ledger busy (``StoreBusy``: another program kept
SQLite's write lock past the busy timeout as it opened the store) is started again at
once, each try lasting that timeout (5 s), until the ledger has not been served for
RESTART_WINDOW_SECONDS since the last ledger process that served died; a failure after
that stops the bank, as does any other start failure of the ledger process (a damaged
ledger), of a cause that passes too: none other has a try that waits so, and started
again at once it would be a tight loop (``ledger_busy``). Taken for lasting, a ledger
process killed while an operator's shell held the write lock stopped the bank, though
the lock was let go seconds later. A try of that outage ended by a signal, with no cause
said (an operator's kill -9 of the retry seen in ps, the OOM killer), is one more try of
it, in the same window, the next started FIRST_BACKOFF_SECONDS later, so that a process
killed at every start is no tight loop (``_cut_busy_try``): read as a start that failed
of no cause, it stopped the bank, the lock still held by another. The child reports its
cause on its ready pipe (``gateway.child``); a cause already reported for the index is
logged once, not on every try (``known_fault``), until the index serves again; with
nothing serving, each try is said at WARNING, with how long nothing has served.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.child import LEDGER_INDEX, PASSING_MARK, passes
from gateway.ledger import StoreBusy

log = logging.getLogger("setpay.workers")

# Restarts with nothing serving allowed within RESTART_WINDOW_SECONDS before the
# supervisor gives up: enough to ride out a rare crash of a lone worker, few enough that a
# crash loop serving nothing stops the bank within a minute. RESTART_WINDOW_SECONDS is
# also how long replacements failing of a cause that passes are started again with no
# worker serving: a minute's outage of the ledger or the token is ridden out.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
# The wait before the second quick start of an index, doubled for each one after: about
# three times a worker's start, so a worker crashed at once costs little CPU, and short
# enough that a second crash within a minute is back within a second.
FIRST_BACKOFF_SECONDS = 0.5
# The longest wait: a crash loop on one index restarts it twice a minute, a load the
# machine and the log carry, and a worker fixed by then (a token back, a file restored)
# serves within half a minute.
MAX_BACKOFF_SECONDS = 30.0
# A worker that served this long without dying ends its index's crash loop: its next
# death is a rare crash again, restarted at once. A minute is longer than a client's
# retries of one request and far shorter than the interval between real crashes.
STEADY_SECONDS = 60.0
# How the ledger busy starts a fault line (``gateway.child.fault_line``): the ledger's
# ``StoreBusy`` (the ledger process opens no ca.db, whose own StoreBusy is named alike).
_LEDGER_BUSY = f"{PASSING_MARK}{StoreBusy.__name__}: "


def ledger_busy(fault: str | None) -> bool:
    """Whether a ledger process's reported start fault is the ledger busy, the one it is
    started again at once for (the module docstring): its every try waits out the store's
    busy timeout first (``gateway.ledger.sqlite``), so the loop is no tighter than that.
    Not any fault that passes: the ledger process's StoreAway, a token away or a start
    killed as late would be tried again as fast as it fails."""
    return fault is not None and fault.startswith(_LEDGER_BUSY)


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_seconds``."""

    limit: int = MAX_RESTARTS
    window_seconds: float = RESTART_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _recent: deque[float] = field(default_factory=deque)

    def take(self) -> bool:
        """Spend one restart if the budget allows it now."""
        now = self.clock()
        while self._recent and now - self._recent[0] >= self.window_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.limit:
            return False
        self._recent.append(now)
        return True


@dataclass
class Backoff:
    """When each worker index is due to start again (see the module docstring)."""

    clock: Callable[[], float] = time.monotonic
    _quick: dict[int, int] = field(default_factory=dict)  # deaths in a row, per index
    _due: dict[int, float] = field(default_factory=dict)  # indexes waiting, and until when

    def died(self, index: int, served_seconds: float, most: float = MAX_BACKOFF_SECONDS) -> float:
        """Note that ``index``'s worker died after serving ``served_seconds``; how long its
        replacement waits (then ``due`` lists it), at most ``most`` seconds."""
        quick = 0 if served_seconds >= STEADY_SECONDS else self._quick.get(index, 0)
        self._quick[index] = quick + 1
        wait = (
            0.0
            if quick == 0
            else min(FIRST_BACKOFF_SECONDS * 2 ** (quick - 1), MAX_BACKOFF_SECONDS, most)
        )
        self._due[index] = self.clock() + wait
        return wait

    def due(self) -> list[int]:
        """The indexes whose wait is over, taken: the caller starts each."""
        now = self.clock()
        ready = sorted(index for index, due in self._due.items() if due <= now)
        for index in ready:
            del self._due[index]
        return ready

    def waiting(self) -> bool:
        """Whether an index still waits to start again."""
        return bool(self._due)

    def next_in(self, most: float) -> float:
        """Seconds until the next index is due, at most ``most`` (none waiting: ``most``)."""
        if not self._due:
            return most
        return max(0.0, min(most, min(self._due.values()) - self.clock()))

    def cancel(self) -> None:
        """Start no one again: the bank is stopping."""
        self._due.clear()


# The signals of a process killed from outside (an operator's kill, the OOM killer's
# SIGKILL, a hangup): a busy try they end is cut short (``_cut_busy_try``). A crash's
# (SIGSEGV, SIGABRT, SIGBUS) is no such try: retried every FIRST_BACKOFF_SECONDS for the
# rest of the window, it then stopped the bank naming the ledger busy, not the crash.
_KILLED_BY = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT})


def killed_from_outside(code: int) -> bool:
    """Whether a child's exit status ``code`` (``Popen``'s: -N for signal N) is a kill
    from outside, not a crash (``_KILLED_BY``)."""
    return code < 0 and -code in _KILLED_BY


class Restarts:
    """The supervisor's judgement on a child that died while the bank serves: start it
    again (a worker after its ``Backoff``, the ledger process at once), or stop the bank."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = Backoff(clock)
        self._budget = RestartBudget(clock=clock)
        self._clock = clock
        # Whether a worker started now finds its ledger: there is no ledger process, or it
        # said it serves (the supervisor sets it as it forks one, and as one is ready).
        self._ledger_serves = True
        # When the ledger process last served: as one that served died.
        self._ledger_served: float | None = None
        # When the ledger process, started again (``refusal`` said so), is due to start.
        self._ledger_due: float | None = None
        # Whether every worker has served once (the supervisor sets it as it says the bank
        # is ready): from then on a worker that cannot start is a replacement.
        self.opened = False
        self._faults: dict[int, str] = {}  # per index: the start failure already logged
        # When a worker last served: as one said it serves, and as one that served died.
        self._last_served: float | None = None

    @property
    def ledger_serves(self) -> bool:
        """Whether a worker started now finds its ledger (``due``)."""
        return self._ledger_serves

    @ledger_serves.setter
    def ledger_serves(self, serves: bool) -> None:
        if serves:  # the ledger process serves: a cause it meets again is news
            self._faults.pop(LEDGER_INDEX, None)
        self._ledger_serves = serves

    def known_fault(self, index: int) -> str | None:
        """The cause of ``index``'s last failed start, already logged (a forked child
        inherits it, and says the same cause again at DEBUG only)."""
        return self._faults.get(index)

    def served(self, index: int) -> None:
        """``index``'s worker serves: a cause it meets again is news, logged again."""
        self._faults.pop(index, None)
        self._last_served = self._clock()

    def _unserved_seconds(self) -> float:
        """How long no worker has served, asked with none serving: since the last that
        served died (or, none known, from now on)."""
        now = self._clock()
        if self._last_served is None:
            self._last_served = now
        return now - self._last_served

    def due(self) -> list[int]:
        """The worker indexes to start again now, taken: those whose back-off is over, once
        the ledger process (if the bank has one) serves (``ledger_serves``). A worker dials
        it as it starts (``RemoteLedgerStore``): started while a restarted one does not
        serve yet, it would fail to start, and a worker that cannot start stops the bank."""
        return self.backoff.due() if self.ledger_serves else []

    def next_in(self, most: float) -> float:
        """Seconds until ``due`` may list an index, or ``ledger_due`` say yes, at most
        ``most``. Held for the ledger process, due indexes wait for its ready line, which
        wakes the supervisor: the back-off would say they are due now, again and again."""
        wait = self.backoff.next_in(most) if self.ledger_serves else most
        if self._ledger_due is not None:
            wait = max(0.0, min(wait, self._ledger_due - self._clock()))
        return wait

    def ledger_due(self) -> bool:
        """Whether the ledger process, to be started again (``refusal`` said None), is due
        now, taken: at once, but for a try of a busy outage ended by a signal (the module
        docstring)."""
        if self._ledger_due is None or self._ledger_due > self._clock():
            return False
        self._ledger_due = None
        return True

    def waiting(self) -> bool:
        """Whether a worker or the ledger process waits to start again."""
        return self.backoff.waiting() or self._ledger_due is not None

    def cancel(self) -> None:
        """Start no one again: the bank is stopping."""
        self.backoff.cancel()
        self._ledger_due = None

    def refusal(
        self,
        name: str,
        index: int,
        ready_at: float | None,
        serving: bool,
        fault: str | None = None,
        *,
        signalled: bool = False,
    ) -> str | None:
        """Why the bank stops rather than start child ``name`` (of ``index``) again, or
        None; when it said it serves, whether another worker still serves, the cause it
        reported if it failed to start (the module docstring: a cause that passes, once
        the bank has served, is retried; with nothing serving, until nothing has served for
        RESTART_WINDOW_SECONDS), and whether a signal ended it. A worker to start again
        waits in ``backoff``; the ledger process is due at once (``ledger_due``), or,
        a try of a busy outage ended by a signal, after FIRST_BACKOFF_SECONDS."""
        ledger = index == LEDGER_INDEX
        if ready_at is None:
            if ledger and self.opened and ledger_busy(fault):
                return self._ledger_start_failed(fault)
            if ledger and self.opened and self._cut_busy_try(fault, signalled):
                return self._ledger_start_failed(self._faults[LEDGER_INDEX], cut=True)
            if ledger or not self.opened or not passes(fault):
                # Starting again would fail again, and serve nothing meanwhile.
                return f"{'the ledger process' if ledger else 'a worker'} failed to start"
            unserved = None if serving else self._unserved_seconds()
            if unserved is not None and unserved >= RESTART_WINDOW_SECONDS:
                cause = (fault or "")[1:]  # its mark dropped
                return (
                    f"{name} failed to start with no worker serving for {unserved:.0f} s"
                    f" (at most {RESTART_WINDOW_SECONDS:.0f} s); the last cause: {cause}"
                )
            self._start_failed(name, index, fault, unserved)
            return None
        if ledger:
            self._ledger_served = self._clock()  # it served until now
        else:
            self._last_served = self._clock()  # it served until now
        if (ledger or not serving) and not self._budget.take():
            alone = "" if ledger else " with no other worker serving"
            return (
                f"{name} died{alone}, after {MAX_RESTARTS} restarts within"
                f" {RESTART_WINDOW_SECONDS:.0f} s: a crash loop"
            )
        if ledger:
            self._ledger_due = self._clock()  # at once
        else:
            wait = self.backoff.died(index, self._clock() - ready_at)
            if wait:
                log.warning("%s starts again in %.1f s (back-off)", name, wait)
        return None

    def repeated(self, index: int, ready_at: float | None, fault: str | None) -> bool:
        """Whether child ``index`` failed to start again of a cause already logged (its
        end is then not news: logged at DEBUG)."""
        return ready_at is None and fault is not None and self._faults.get(index) == fault

    def _cut_busy_try(self, fault: str | None, signalled: bool) -> bool:
        """Whether the ledger process, failing to start with no cause said, ended by a
        signal, was a try of a busy outage: the last cause recorded for it, since it last
        served, is the ledger busy (the module docstring). Any cause it said is judged as
        said: a damaged ledger met by a retry still stops the bank at once."""
        return fault is None and signalled and ledger_busy(self._faults.get(LEDGER_INDEX))

    def _ledger_start_failed(self, fault: str | None, *, cut: bool = False) -> str | None:
        """The ledger process, started again once the bank has served, failed to start of
        the ledger busy (``ledger_busy``: another program holds SQLite's write lock), or
        was a try of that outage ended by a signal (``cut``): why the bank stops, once the
        ledger has not been served for RESTART_WINDOW_SECONDS since the last ledger
        process that served died; until then None, and it is started again at once, or
        FIRST_BACKOFF_SECONDS later when ``cut`` (the module docstring)."""
        now = self._clock()
        if self._ledger_served is None:
            self._ledger_served = now
        unserved = now - self._ledger_served
        if unserved >= RESTART_WINDOW_SECONDS:
            return (
                f"the ledger process failed to start with the ledger not served for"
                f" {unserved:.0f} s (at most {RESTART_WINDOW_SECONDS:.0f} s); the last"
                f" cause: {(fault or '')[1:]}"
            )
        if fault is not None:
            self._faults[LEDGER_INDEX] = fault
        wait = FIRST_BACKOFF_SECONDS if cut else 0.0
        self._ledger_due = now + wait
        when = f"in {wait:.1f} s" if cut else "now"
        log.warning(
            "the ledger process cannot start: it starts again %s (the ledger has not been"
            " served for %.0f s; the bank stops once that is %.0f s)",
            when, unserved, RESTART_WINDOW_SECONDS,
        )  # fmt: skip
        return None

    def _start_failed(
        self, name: str, index: int, fault: str | None, unserved: float | None
    ) -> None:
        """A replacement failed to start of a fault that passes: back it off. With nothing
        serving (for ``unserved`` seconds), said at every try, and its wait cut to what
        is left of RESTART_WINDOW_SECONDS (at least FIRST_BACKOFF_SECONDS): the try that
        may stop the bank starts as the window ends, not up to MAX_BACKOFF_SECONDS after
        (the module docstring); else said once a cause."""
        left = MAX_BACKOFF_SECONDS
        if unserved is not None:
            left = max(FIRST_BACKOFF_SECONDS, RESTART_WINDOW_SECONDS - unserved)
        wait = self.backoff.died(index, 0.0, most=left)
        if unserved is not None:
            if fault is not None:
                self._faults[index] = fault
            log.warning(
                "%s cannot start and no other worker serves: it starts again in %.1f s"
                " (nothing has served for %.0f s; the bank stops once that is %.0f s)",
                name, wait, unserved, RESTART_WINDOW_SECONDS,
            )  # fmt: skip
            return
        if self.repeated(index, None, fault):
            log.debug("%s still cannot start; starts again in %.1f s", name, wait)
            return
        if fault is not None:
            self._faults[index] = fault
        log.warning(
            "%s cannot start while another worker serves; the bank goes on, and %s starts"
            " again in %.1f s, then at most every %.0f s until it serves (logged again only"
            " if the cause changes)",
            name, name, wait, MAX_BACKOFF_SECONDS,
        )  # fmt: skip
