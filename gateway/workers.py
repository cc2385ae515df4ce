"""Worker processes: ``setpay gateway serve --workers N`` (DESIGN.md 5.4).

The supervisor is the process the operator started. It has loaded and validated the
configuration; it brings the ledger's schema up to date (once, alone: see ``serve``),
reserves the two ports, prepares the metrics directory, then forks N workers. It never
creates a gRPC object or opens a key backend: gRPC supports ``fork`` only before its
first object exists, and PKCS#11 sessions belong to the process that opened them. Each
worker calls ``start_bank(..., reuse_port=True)`` and serves (``gateway.worker``).

TLS. The supervisor judges the TLS server certificate once for the bank, before reserving
anything: it refuses an ended one (``WorkerError``) and warns of one near its end. Workers
only read its end (``gateway.process`` says why).

Ports. The supervisor reserves each address before forking (``gateway.ports``) and keeps
the reservation until it exits: a port 0 becomes a real port before any worker starts,
and every worker, restarted ones too, binds that same port with SO_REUSEPORT.

Supervision. The supervisor stays single-threaded, so forking a replacement later is as
safe as the first fork; it waits in one selector loop on signals (a wakeup pipe), the
workers' ready pipes and the metrics endpoint. A worker reports its ports once serving.
Every worker must be serving within WORKER_START_SECONDS. At the bank's first start, a
worker that fails before it serves (a wrong PIN, a missing token or file) stops the bank
at once: starting it again would fail again. Once the bank has served, a replacement that
fails so while another worker serves is started again after the back-off instead, its
cause (reported on its ready pipe) logged once (``gateway.restarts``). A worker that dies while
serving is started again after a back-off that grows while its index keeps crashing (the
loop wakes for it); the bank gives up (exit 1) only on a crash loop with no worker serving
(``gateway.restarts``).

Stopping. SIGTERM or SIGINT to the supervisor is forwarded to every worker as SIGTERM
(one more is answered "already stopping" in the log). Both are held from the moment
``serve`` starts until it has cleaned up (``gateway.supervisor_signals``): one before the
loop runs stops the bank before any worker starts, and still removes what serve prepared.
A worker says NOT_SERVING for ``not_serving_seconds``, drains within the grace period,
closes, and exits 0, or CALLS_CUT if it cut calls (``gateway.worker``); an orphan stops by
itself. The supervisor is gone within those two periods plus STOP_MARGIN_SECONDS
(stragglers are killed; one still starting is given until its start is due first:
``stop_deadline``). A child that fails logs whether it could not serve or failed while
stopping (``gateway.child``). The supervisor logs how each child ended; for SIGBUS, its
likely cause, a mapped file such as a metrics sample file (``gateway.child_exit``).

The ledger process. With ``[ledger] service = true`` and a SQLite ledger, one more child
owns the ledger and commits for every worker (``gateway.ledger_process``). It is forked
first, the workers once it serves; it is restarted at once if it dies (workers due to
start meanwhile wait until it serves), and stopped only after the last worker has gone,
so draining workers keep their ledger (it ignores a terminal's Ctrl-C).

Errors: ``WorkerError`` (the ledger cannot be opened, the TLS server certificate has
ended or cannot be read, a port cannot be reserved, metrics cannot be served), from
``serve`` before any worker starts. Then the exit status: 0 when every child stopped
cleanly; 1 when one could not start, crashed too often, or failed or was killed as it
stopped; 3 (CALLS_CUT) when none failed but a worker cut calls at the end of the grace
period (their callers got UNAVAILABLE, "Cancelling all calls", not an answer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gateway import child as children
from gateway import metrics
from gateway.bank_errors import ProvisioningError
from gateway.child import LEDGER_INDEX, WatchedChild, become_child, withdraw_demand
from gateway.child_exit import Stopped, ended, stopped
from gateway.config import BankConfig
from gateway.issuer import open_store
from gateway.ledger import LedgerError
from gateway.ledger_process import LedgerSocket
from gateway.ports import PortError, reserve
from gateway.process import check_tls_certificate
from gateway.restarts import Restarts
from gateway.scrape import MultiprocessDirectory, ScrapeEndpoint, prepare_multiprocess_directory
from gateway.stop_signals import RepeatNotice
from gateway.supervisor_signals import WATCHED, SupervisorSignals
from gateway.worker import CALLS_CUT, WorkerPlan
from hsm.cryptoki import check_not_initialized

log = logging.getLogger("setpay.workers")

# Every worker must be serving this long after it was forked: opening a PKCS#11 token and
# logging in (serialized across processes) and loading the PKI take a few seconds at most.
WORKER_START_SECONDS = 60.0
# After the grace period, workers get this long to close key sessions and the ledger.
STOP_MARGIN_SECONDS = 10.0
# The supervisor's loop wakes at least this often to check its deadlines; signals, worker
# exits and scrapes wake it at once.
LOOP_SECONDS = 1.0
# A ready line is "GATEWAY_PORT CA_PORT\n"; anything longer is not one (a fault line is).
READY_LINE_BYTES = 64


class WorkerError(Exception):
    """The workers cannot be started as configured."""


def stop_deadline(
    bank_deadline: float, started: float, ready_at: float | None, stop: float
) -> float:
    """When a child must be gone, the bank being asked to stop by ``bank_deadline``.

    One still starting is never killed for the stop before its start is due
    (WORKER_START_SECONDS after its fork): it may be logging in to the token, which other
    processes wait for and which a kill can leave half written. It acts on the stop once it
    serves, and from then on gets ``stop`` seconds (its notice, grace and closing margin),
    as it would have had if it had served when the stop began.
    """
    if ready_at is None:
        return max(bank_deadline, started + WORKER_START_SECONDS)
    return max(bank_deadline, ready_at + stop)


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
        self._deadline: float | None = None  # once stopping: when serving children are due
        self._ledger_due = 0.0  # the ledger process's, no earlier than any worker's
        self._failed = False
        self._cut = False  # a worker cut calls at the end of the grace period
        self._announced = False
        self._expected = [plan.listen.rpartition(":")[2], plan.ca_listen.rpartition(":")[2]]

    def run(self) -> int:
        """Start the workers and supervise them until they are all gone; the exit status."""
        self._signals.catch()
        self._selector.register(self._signals.fileno(), selectors.EVENT_READ, "wake")
        if self._scrape is not None:
            self._selector.register(self._scrape.fileno(), selectors.EVENT_READ, "scrape")
        try:
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
        # Signals stay blocked across fork so the child never runs our handlers.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            pid = os.fork()
            if pid == 0:  # the child; never returns
                os.close(read_fd)
                plan = replace(self._plan, judge_presented=not self._announced)
                known = self._restarts.known_fault(index)
                become_child(plan, index, write_fd, mask, self._drop_in_child, known)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._selector.register(read_fd, selectors.EVENT_READ, pid)
        return WatchedChild(index, pid, read_fd, time.monotonic())

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
        try:
            chunk = os.read(ready_fd, children.FAULT_LINE_BYTES)
        except BlockingIOError:
            return
        worker.received += chunk
        line, newline, _ = worker.received.partition(b"\n")
        fault = worker.received[:1] in children.REPORTED_MARKS
        if newline and fault:  # it cannot serve, and exits (``gateway.child``)
            worker.fault = line.decode("utf-8", "replace")
        elif newline and worker is self._ledger:
            worker.ready_at, self._restarts.ledger_serves = time.monotonic(), True
            log.info("ledger process serving (pid %d)", worker.pid)
            if not self._workers and not self._restarts.backoff.waiting() and not self._stopping():
                self._spawn_workers()
        elif newline:
            ports = line.decode("ascii", "replace").split()
            if ports != self._expected:
                log.error("worker %d serves on %s, not %s", worker.index, ports, self._expected)
                self._fail("a worker bound other ports than the reserved ones")
            worker.ready_at = time.monotonic()
            self._restarts.served(worker.index)
            log.info("worker %d serving (pid %d)", worker.index, worker.pid)
        longest = children.FAULT_LINE_BYTES if fault else READY_LINE_BYTES
        if newline or not chunk or len(worker.received) > longest:
            self._selector.unregister(ready_fd)
            os.close(ready_fd)
            worker.ready_fd = None
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
            if worker.ready_fd is not None:
                self._selector.unregister(worker.ready_fd)
                os.close(worker.ready_fd)
            metrics.worker_gone(pid, len(self._workers))
            withdraw_demand(self._plan, worker.index)  # before its replacement can start
            self._to_restart(worker, os.waitstatus_to_exitcode(status))  # if so, when due
            if not self._workers and self._stopping():
                self._stop_ledger()  # its last client is gone

    def _ledger_exited(self, ledger: WatchedChild, code: int) -> None:
        self._ledger = None
        if ledger.ready_fd is not None:
            self._selector.unregister(ledger.ready_fd)
            os.close(ledger.ready_fd)
        if self._to_restart(ledger, code):
            self._spawn_ledger()
            log.warning("ledger process restarted; workers reconnect on their next request")

    def _stop_ledger(self) -> None:
        if self._ledger is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._ledger.pid, signal.SIGTERM)

    def _to_restart(self, child: WatchedChild, code: int) -> bool:
        """Say how ``child`` ended (``gateway.child_exit``); whether to start it again (if
        not, the bank stops)."""
        if self._stopping():
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
        why = self._restarts.refusal(child.name, child.index, child.ready_at, serving, child.fault)
        if why is not None:
            self._fail(why)
        return why is None

    # -- stopping

    def _stopping(self) -> bool:
        return self._deadline is not None

    def _stop_seconds(self) -> float:
        """How long a serving child may take to stop: notice, grace, closing margin."""
        config = self._plan.config
        return config.not_serving_seconds + config.grace_seconds + STOP_MARGIN_SECONDS

    def _fail(self, why: str) -> None:
        log.error("stopping the bank: %s", why)
        self._failed = True
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self._stopping():
            return
        self._deadline = deadline = time.monotonic() + self._stop_seconds()
        self._restarts.backoff.cancel()
        self._repeats = RepeatNotice(
            log, "already stopping, workers due to end",
            lambda: max(self._dues(deadline).values(), default=deadline),
        )  # fmt: skip
        grace = self._plan.config.grace_seconds
        log.info("stopping %d workers (grace %.1f s)", len(self._workers), grace)
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if not self._workers:
            self._stop_ledger()  # otherwise once the last worker is gone

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._deadline is not None:
            self._kill_stragglers(now, self._deadline)
            return
        late = [
            w for w in self._children() if not w.ready and now - w.started > WORKER_START_SECONDS
        ]
        if late:
            self._fail(f"{late[0].name} was not serving after {WORKER_START_SECONDS:.0f} s")

    def _dues(self, bank_deadline: float) -> dict[int, float]:
        """When each child must be gone (``stop_deadline``). The ledger process is asked to
        stop only once the last worker is gone, so it is due no earlier than any worker."""
        stop = self._stop_seconds()
        due = {
            c.pid: stop_deadline(bank_deadline, c.started, c.ready_at, stop)
            for c in self._children()
        }
        if self._ledger is not None:
            # The latest seen, kept: the workers it outlives may be gone by the time it
            # is asked to stop.
            self._ledger_due = max(self._ledger_due, *due.values())
            due[self._ledger.pid] = self._ledger_due
        return due

    def _kill_stragglers(self, now: float, bank_deadline: float) -> None:
        """Kill each child past its ``stop_deadline``."""
        due = self._dues(bank_deadline)
        for child in self._children():
            if now > due[child.pid] and not child.killed:
                log.error("%s (pid %d) did not stop: killing it", child.name, child.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                child.killed = True
                self._failed = True

    def _loop(self) -> None:
        while self._workers or self._ledger is not None or self._restarts.backoff.waiting():
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
            for index in [] if self._stopping() else self._restarts.due():
                self._spawn(index)
                metrics.worker_restarted(len(self._workers))
                log.warning("worker %d restarted", index)


# --- the command --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """What the bank serves on, once every worker is serving. With ``metrics_port = "any"``
    the scrape endpoint binds a port the OS picks: nothing else can take it in between."""

    port: int
    ca_port: int
    metrics_port: int | None
    workers: int


def serve(config: BankConfig, *, on_ready: Callable[[Bound], None] = lambda bound: None) -> int:
    """Run the bank as ``config.workers`` worker processes until SIGTERM/SIGINT; the exit
    status (0: every worker stopped cleanly). ``on_ready`` runs once all are serving."""
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
    signals = SupervisorSignals()  # before anything is prepared: a stop from now on is no kill
    inherited: list[Callable[[], None]] = []  # what the supervisor holds, workers close
    directory: MultiprocessDirectory | None = None
    ledger_socket: LedgerSocket | None = None  # removed by the supervisor alone
    try:
        try:
            check_tls_certificate(config)  # once for the bank: see the module docstring
        except ProvisioningError as exc:
            raise WorkerError(str(exc)) from exc
        try:
            gateway = reserve(config.listen)
            inherited.append(gateway.close)
            ca = reserve(config.ca_listen)
            inherited.append(ca.close)
        except PortError as exc:
            raise WorkerError(str(exc)) from exc
        endpoint: ScrapeEndpoint | None = None
        if config.metrics_port:
            try:
                directory = prepare_multiprocess_directory()
                metrics.enable_supervisor(config.workers)
                port = config.metrics_port if isinstance(config.metrics_port, int) else 0
                endpoint = ScrapeEndpoint(config.metrics_host, port, directory)
            except metrics.MetricsError as exc:
                raise WorkerError(str(exc)) from exc
            inherited.append(endpoint.close)
        if config.uses_ledger_service():
            try:
                ledger_socket = LedgerSocket()
            except OSError as exc:  # its directory or demand board: a full temporary directory
                raise WorkerError(f"the ledger service's directory cannot be made: {exc}") from exc
        plan = WorkerPlan(
            config, gateway.address, ca.address, metrics=endpoint is not None,
            supervisor_pid=os.getpid(),
            ledger_socket=ledger_socket.path if ledger_socket else None,
        )  # fmt: skip
        bound = Bound(gateway.port, ca.port, endpoint.port if endpoint else None, config.workers)
        supervisor = Supervisor(
            plan, config.workers, signals=signals, inherited=inherited, scrape=endpoint,
            samples=directory.path if directory else None, on_ready=lambda: on_ready(bound),
        )  # fmt: skip
        return supervisor.run()
    finally:
        for close in inherited:
            close()
        if directory is not None:
            directory.remove()
        if ledger_socket is not None:
            ledger_socket.close()
        signals.close()  # last: until here a stop signal is only noted
