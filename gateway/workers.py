"""Worker processes: ``setpay gateway serve --workers N`` (DESIGN.md 5.4).

The supervisor is the process the operator started. It has loaded and validated the
configuration; it brings the ledger's schema up to date (once, alone: see ``serve``),
reserves the two ports, prepares the metrics directory, then forks N workers. It never
creates a gRPC object or opens a key backend: gRPC supports ``fork`` only before its
first object exists, and PKCS#11 sessions belong to the process that opened them. Each
worker calls ``start_bank(..., reuse_port=True)`` and serves (``gateway.worker``). Every
child joins the supervisor's bank start (``hsm.pinsource.join_bank_start``, a random name
per ``serve``): an ``env:`` PIN the token refused is then offered by one worker of the
start, not by each, nor by their replacements, and again at the next start.

TLS and ports. The supervisor judges the TLS server certificate once for the bank, before
reserving anything, then reserves each address before forking, until it exits: every
worker, restarted ones too, binds that same port with SO_REUSEPORT
(``gateway.supervisor_resources``).

Supervision. The supervisor stays single-threaded, so forking a replacement later is as
safe as the first fork; it waits in one selector loop on signals (a wakeup pipe), the
workers' ready pipes (``gateway.child_ready``) and the metrics endpoint. A worker reports
its ports once serving. Every worker must be serving within WORKER_START_SECONDS
(``gateway.child_deadlines``). At the bank's first start, a worker that fails before it
serves (a wrong PIN, a missing token or file) stops the bank at once: starting it again
would fail again. Once the bank has served, a replacement that fails so while another
worker serves is started again after the back-off instead, its cause (reported on its
ready pipe) logged once (``gateway.restarts``); so is one stuck in its start, killed once
its start is due. A replacement that never served, a ledger process's too, ends with a
stop, killed or of such a cause, without failing it (``spared_at_stop`` in
``gateway.child_deadlines``). A worker that dies while serving is started again after a
back-off that grows while its index keeps crashing (the loop wakes for it); the bank
gives up (exit 1) only on a crash loop with no worker serving (``gateway.restarts``).

Stopping. SIGTERM or SIGINT to the supervisor is forwarded to every worker as SIGTERM
(one more is answered "already stopping" in the log). Both are held from the moment
``serve`` starts until it has cleaned up (``gateway.supervisor_signals``): one before the
loop runs stops the bank before any worker starts, and still removes what serve prepared.
A worker says NOT_SERVING for ``not_serving_seconds``, drains within the grace period,
closes, and exits 0, or CALLS_CUT if it cut calls (``gateway.worker``); an orphan stops by
itself. The supervisor is gone within those two periods plus STOP_MARGIN_SECONDS
(stragglers are killed; one still starting, but for a retried replacement, is given
until its start is due first: ``gateway.child_deadlines``). A child that fails logs
whether it could not serve or failed while stopping (``gateway.child``). The supervisor
logs how each child ended; for SIGBUS, its likely cause, a mapped file such as a metrics
sample file (``gateway.child_exit``).

The ledger process. With ``[ledger] service = true`` and a SQLite ledger, one more child
owns the ledger and commits for every worker (``gateway.ledger_process``). It is forked
first, the workers once it serves; it is restarted at once if it dies (workers due to
start meanwhile wait until it serves), and stopped only after the last worker has gone,
so draining workers keep their ledger (it ignores a terminal's Ctrl-C). One that said it
serves and died before the supervisor read its pipe died serving: its line is read as
it is reaped, as a worker's is.

Errors: ``WorkerError`` (the ledger cannot be opened, the TLS server certificate has
ended or cannot be read, a port cannot be reserved, metrics cannot be served), from
``serve`` before any worker starts. Then the exit status: 0 when every child stopped
cleanly (a replacement that never served, killed or failing its start as the bank stops,
counts as stopped); 1 when one could not start, crashed too often, or failed or was
killed as it stopped (one that served and then hung past its stop, replacements too); 3
(CALLS_CUT) when none failed but a worker cut calls at the end of the grace period (their
callers got UNAVAILABLE, "Cancelling all calls", not an answer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from gateway import child_deadlines as deadlines
from gateway import metrics
from gateway.child import LEDGER_INDEX, WatchedChild, become_child, passes, withdraw_demand
from gateway.child_deadlines import (
    StopDeadlines,
    late_starts,
    spared,
    spared_at_stop,
    stop_seconds,
)
from gateway.child_exit import Stopped, ended, stopped
from gateway.child_ready import read_ready
from gateway.config import BankConfig
from gateway.issuer import open_store
from gateway.ledger import LedgerError
from gateway.restarts import Restarts, killed_from_outside
from gateway.scrape import ScrapeEndpoint
from gateway.stop_signals import RepeatNotice
from gateway.supervisor_resources import Bound, WorkerError, prepared
from gateway.supervisor_signals import WATCHED, SupervisorSignals
from gateway.worker import CALLS_CUT, WorkerPlan
from hsm.cryptoki import check_not_initialized
from hsm.pinsource import join_bank_start

log = logging.getLogger("setpay.workers")

# The supervisor's loop wakes at least this often to check its deadlines; signals, worker
# exits and scrapes wake it at once.
LOOP_SECONDS = 1.0


__all__ = ["Bound", "Supervisor", "WorkerError", "serve"]


# --- the supervisor -----------------------------------------------------------------------


class Supervisor:
    """Forks, watches, restarts and stops the workers (see the module docstring)."""

    def __init__(
        self,
        plan: WorkerPlan,
        workers: int,
        *,
        signals: SupervisorSignals,
        inherited: list[Callable[[], None]],
        scrape: ScrapeEndpoint | None = None,
        samples: Path | None = None,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self._plan = plan
        self._samples = samples  # the metrics sample directory, when metrics are on
        self._count = workers
        self._signals = signals
        self._inherited = inherited
        self._scrape = scrape
        if scrape is not None:
            scrape.count_cpu_of(lambda: [child.pid for child in self._children()])
        self._on_ready = on_ready
        self._workers: dict[int, WatchedChild] = {}
        self._ledger: WatchedChild | None = None  # the ledger process, if the plan has one
        self._restarts = Restarts()
        self._repeats: RepeatNotice | None = None  # once stopping
        self._selector = selectors.DefaultSelector()
        self._deadlines: StopDeadlines | None = None  # once stopping
        self._failed = False
        self._cut = False  # a worker cut calls at the end of the grace period
        self._announced = False
        self._expected = [plan.listen.rpartition(":")[2], plan.ca_listen.rpartition(":")[2]]
        self._start = secrets.token_hex(16)  # this start's name, for its children's logins

    def run(self) -> int:
        """Start the workers and supervise them until they are all gone; the exit status."""
        self._signals.catch()
        try:  # the selector closed whatever fails, its registering too
            self._signals.watch(self._selector, "wake")  # and the lifeline, if it has one
            if self._scrape is not None:
                self._selector.register(self._scrape.fileno(), selectors.EVENT_READ, "scrape")
            if self._signals.stop_requested:  # held while serve prepared: nothing to stop
                log.info("stop requested before any worker started")
                return 0
            if self._plan.ledger_socket is not None:
                self._spawn_ledger()  # the workers follow once it serves
            else:
                self._spawn_workers()
            self._loop()
        finally:
            self._selector.close()
        return 1 if self._failed else CALLS_CUT if self._cut else 0

    # -- workers

    def _spawn_workers(self) -> None:
        for index in range(self._count):
            self._spawn(index)

    def _fork(self, index: int) -> WatchedChild:
        """Fork a child that runs ``gateway.child.become_child``; the child as watched."""
        # Each worker opens its own token sessions after the fork (DESIGN.md 5.4): a module
        # initialized here would be inherited, and its connections shared, by every child.
        check_not_initialized("fork a worker")
        read_fd, write_fd = os.pipe()
        known = self._restarts.known_fault(index)  # its last start failed: a retry
        # Signals stay blocked across fork so the child never runs our handlers.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            pid = os.fork()
            if pid == 0:  # the child; never returns
                os.close(read_fd)
                join_bank_start(self._start)
                plan = replace(self._plan, judge_presented=not self._announced)
                become_child(plan, index, write_fd, mask, self._drop_in_child, known)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._selector.register(read_fd, selectors.EVENT_READ, pid)
        started = time.monotonic()
        return WatchedChild(
            index, pid, read_fd, started, replaces=self._announced, retry=bool(known)
        )

    def _spawn(self, index: int) -> None:
        worker = self._fork(index)
        self._workers[worker.pid] = worker
        log.info("worker %d started (pid %d)", index, worker.pid)

    def _spawn_ledger(self) -> None:
        self._ledger, self._restarts.ledger_serves = self._fork(LEDGER_INDEX), False
        log.info("ledger process started (pid %d)", self._ledger.pid)

    def _children(self) -> list[WatchedChild]:
        return [*self._workers.values(), *([self._ledger] if self._ledger else [])]

    def _drop_in_child(self) -> None:
        """In a child: close what belongs to the supervisor (its loop, its sockets, the
        other children's ready pipes)."""
        self._signals.forget()
        self._selector.close()
        for child in self._children():
            if child.ready_fd is not None:
                os.close(child.ready_fd)
        for close in self._inherited:
            close()

    def _read_ready(self, worker: WatchedChild, ready_fd: int) -> None:
        heard = read_ready(worker, ready_fd)
        if heard is None:
            return
        if heard.ready is not None and worker is self._ledger:
            worker.ready_at, self._restarts.ledger_serves = time.monotonic(), True
            log.info("ledger process serving (pid %d)", worker.pid)
            if not self._workers and not self._restarts.backoff.waiting() and not self._stopping():
                self._spawn_workers()
        elif heard.ready is not None:
            ports = heard.ready.split()
            if ports != self._expected:
                log.error("worker %d serves on %s, not %s", worker.index, ports, self._expected)
                self._fail("a worker bound other ports than the reserved ones")
            worker.ready_at = time.monotonic()
            self._restarts.served(worker.index)
            log.info("worker %d serving (pid %d)", worker.index, worker.pid)
        if heard.done:
            self._close_pipe(worker)
        serving = [w.ready for w in self._workers.values()]
        everyone = len(serving) == self._count and all(serving)
        if everyone and not self._announced and not self._stopping():
            self._announced = self._restarts.opened = True
            self._on_ready()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self._ledger is not None and pid == self._ledger.pid:
                metrics.ledger_process_gone(pid)
                self._ledger_exited(self._ledger, os.waitstatus_to_exitcode(status))
                continue
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            if worker.ready_fd is not None:  # what it said before it exited: a fault?
                self._read_ready(worker, worker.ready_fd)
            self._close_pipe(worker)
            metrics.worker_gone(pid, len(self._workers))
            withdraw_demand(self._plan, worker.index)  # before its replacement can start
            self._to_restart(worker, os.waitstatus_to_exitcode(status))  # if so, when due
            if not self._workers and self._stopping():
                self._stop_ledger()  # its last client is gone

    def _ledger_exited(self, ledger: WatchedChild, code: int) -> None:
        self._ledger = None
        if ledger.ready_fd is not None and not ledger.ready:
            # What it said before it exited, not yet read: a fault, or that it served (a
            # death then, restarted as one, not a start failure stopping the bank).
            heard = read_ready(ledger, ledger.ready_fd)
            if heard is not None and heard.ready is not None:
                ledger.ready_at, self._restarts.ledger_serves = time.monotonic(), True
                log.info("ledger process serving (pid %d)", ledger.pid)
        self._close_pipe(ledger)
        # Due at once, but for a try of a busy outage that a signal ended (``_loop``).
        if self._to_restart(ledger, code) and self._restarts.ledger_due():
            self._spawn_ledger()
            if ledger.ready:  # a start failure's retry is said by ``gateway.restarts``
                log.warning("ledger process restarted; workers reconnect on their next request")

    def _close_pipe(self, child: WatchedChild) -> None:
        """Stop watching ``child``'s ready pipe, if it still is."""
        if child.ready_fd is not None:
            self._selector.unregister(child.ready_fd)
            os.close(child.ready_fd)
            child.ready_fd = None

    def _stop_ledger(self) -> None:
        if self._ledger is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._ledger.pid, signal.SIGTERM)

    def _to_restart(self, child: WatchedChild, code: int) -> bool:
        """Say how ``child`` ended (``gateway.child_exit``); whether to start it again (if
        not, the bank stops)."""
        if self._stopping():
            if spared_at_stop(child) and (child.killed or passes(child.fault)):
                log.info(
                    "%s (pid %d), a replacement that never served, ended with the stop: %s",
                    child.name, child.pid, ended(code, self._samples),
                )  # fmt: skip
                return False
            end = stopped(child.name, child.pid, child.index, code, self._samples)
            self._cut |= end is Stopped.CUT_CALLS
            self._failed |= end is Stopped.FAILED
            return False
        repeated = self._restarts.repeated(child.index, child.ready_at, child.fault)
        log.log(
            logging.DEBUG if repeated else logging.ERROR, "%s (pid %d) died: %s",
            child.name, child.pid, ended(code, self._samples),
        )  # fmt: skip
        serving = any(w.ready for w in self._workers.values())
        why = self._restarts.refusal(
            child.name, child.index, child.ready_at, serving, child.fault,
            signalled=killed_from_outside(code),
        )  # fmt: skip
        if why is not None:
            self._fail(why)
        return why is None

    # -- stopping

    def _stopping(self) -> bool:
        return self._deadlines is not None

    def _fail(self, why: str) -> None:
        log.error("stopping the bank: %s", why)
        self._failed = True
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self._stopping():
            return
        stop = stop_seconds(self._plan.config)
        self._deadlines = due = StopDeadlines(time.monotonic() + stop, stop)
        self._restarts.cancel()
        self._repeats = RepeatNotice(
            log, "already stopping, workers due to end", lambda: due.last_due(self._children())
        )
        grace = self._plan.config.grace_seconds
        log.info("stopping %d workers (grace %.1f s)", len(self._workers), grace)
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if not self._workers:
            self._stop_ledger()  # otherwise once the last worker is gone

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._deadlines is not None:
            killed = self._deadlines.kill_stragglers(now, self._children())
            self._failed |= not all(spared_at_stop(child) for child in killed)
            return
        start = deadlines.WORKER_START_SECONDS
        for child in late_starts(self._children(), now):
            if not spared(child) or not any(w.ready for w in self._workers.values()):
                self._fail(f"{child.name} was not serving after {start:.0f} s")
                return
            log.warning(
                "%s (pid %d) was not serving after %.0f s: killing it, to start it again",
                child.name, child.pid, start,
            )  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.killed, child.fault = True, deadlines.late_fault()

    def _loop(self) -> None:
        while self._workers or self._ledger is not None or self._restarts.waiting():
            for key, _ in self._selector.select(self._restarts.next_in(LOOP_SECONDS)):
                if key.data == "wake":
                    self._signals.drain()
                elif key.data == "scrape" and self._scrape is not None:
                    self._scrape.handle()
                else:
                    worker = self._workers.get(key.data)
                    if worker is None and self._ledger and self._ledger.pid == key.data:
                        worker = self._ledger
                    if worker is not None and worker.ready_fd is not None:
                        self._read_ready(worker, worker.ready_fd)
            if self._signals.new_request():
                if self._repeats is not None:
                    self._repeats.repeated()
                else:
                    log.info("stop requested")
                    self._begin_stop()
            self._reap()
            self._check_deadlines()
            if self._ledger is None and not self._stopping() and self._restarts.ledger_due():
                self._spawn_ledger()  # its pause over (``gateway.restarts``)
            for index in [] if self._stopping() else self._restarts.due():
                self._spawn(index)
                metrics.worker_restarted(len(self._workers))
                log.warning("worker %d restarted", index)


# --- the command --------------------------------------------------------------------------


def serve(
    config: BankConfig,
    *,
    on_ready: Callable[[Bound], None] = lambda bound: None,
    lifeline: int | None = None,
) -> int:
    """Run the bank as ``config.workers`` worker processes until SIGTERM/SIGINT, or the end
    of ``lifeline`` (``gateway.supervisor_signals``); the exit status (0: every worker
    stopped cleanly). ``on_ready`` runs once all are serving."""
    # Opening the store migrates its schema. Left to the workers, all would open it at once:
    # on SQLite one migrates under the write lock while the others give up after its busy
    # timeout, failing their start and so the bank; a ledger process must serve within
    # WORKER_START_SECONDS; and the indexes of a big ledger take minutes. Safe before fork
    # (DESIGN.md 5.4): no key backend, no gRPC object, and ``close`` ends every SQLite or
    # PostgreSQL connection, joins the store's writer thread and closes its lock file. Done
    # before the stop signals are held: nothing is prepared yet that a stop must undo. A
    # stop is then not prompt: on SQLite, Ctrl-C takes effect only once the running C
    # statement (a CREATE INDEX) returns; SIGTERM, with no handler yet, ends the process at
    # once, but setpay as PID 1 in Docker is spared a signal it has no handler for: SIGTERM
    # is ignored until the handlers are installed after the migration, and ``docker stop``
    # SIGKILLs after its timeout. Either way the transaction rolls back: no harm done.
    try:
        open_store(config).close()
    except LedgerError as exc:
        raise WorkerError(f"the ledger cannot be opened: {exc}") from exc
    # Before anything is prepared: a stop from now on is no kill.
    signals = SupervisorSignals(lifeline)
    try:
        with prepared(config) as held:  # ``gateway.supervisor_resources``
            supervisor = Supervisor(
                held.plan, config.workers, signals=signals, inherited=held.inherited,
                scrape=held.endpoint, samples=held.samples,
                on_ready=lambda: on_ready(held.bound),
            )  # fmt: skip
            return supervisor.run()
    finally:
        signals.close()  # last: until here a stop signal is only noted
