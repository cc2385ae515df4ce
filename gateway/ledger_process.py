"""The ledger process: the SQLite ledger's one writer, serving every worker.

The supervisor (``gateway.workers``) forks it before the workers, when the configuration
has ``[ledger] service = true`` and a SQLite store. It opens the store (creating or
migrating the schema), serves it on a Unix socket in a directory of its own
(``gateway.ledger.service``) and reports ready; the workers then start and connect.
SIGTERM: it stops accepting, commits whatever is queued, closes the database and exits 0.
The supervisor stops it only after the last worker is gone, so no worker loses its
ledger mid-request during a clean stop; SIGINT (a terminal's Ctrl-C reaches the whole
process group) is therefore ignored here. If it dies while serving, the supervisor starts
another on the same socket path; meanwhile the workers answer UNAVAILABLE. One that cannot
start as another program holds the ledger's write lock past the busy timeout (``StoreBusy``:
an operator's shell, a VACUUM) is started again until it serves or the ledger has gone a
minute unserved; any other fault as it starts (a damaged ledger) stops the bank
(``gateway.restarts``). Asked to stop as it waits out that lock, at its first start or a
later one, it gives up the wait at once, logs so at INFO and exits 0: a stop, not a failed
start. It waited the busy timeout out (twice when the signal cut SQLite's wait short),
then exited 1, and a clean stop of the bank during a ledger outage said it failed; later
it exited 1 at once, which a stop during its first start still counted as failed, with
two ERROR lines. It says the ledger busy on its ready pipe all the same
(``gateway.child``): a SIGTERM sent to it alone, the bank not stopping (an operator's kill
of a retry seen in ps), is then the try it cut short, started again, not a start that
failed of no passing fault, which stopped the bank.

The socket's directory is created by the supervisor with mode 0700 under the system's
temporary directory, so its path stays far below the 108 bytes a Unix socket path may
have, wherever the bank's files are. The service holds a connection for every thread of
every worker that uses the ledger (``connections_needed``), raising the process's
open-file limit for them if it must (``descriptors_for``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from gateway import metrics, scheduling
from gateway.config import BankConfig
from gateway.demand import DemandBoard, SharedDemand, demand_path
from gateway.ledger import SqliteLedgerStore, StoreBusy
from gateway.ledger.service import MAX_CONNECTIONS, LedgerService
from gateway.stop_signals import StopSignals

log = logging.getLogger("setpay.ledger")

SOCKET_NAME = "ledger.sock"
# How often the ledger process checks that its supervisor is still there.
PARENT_CHECK_SECONDS = 1.0
# The process name ``ps -o comm`` and /proc/PID/comm show (at most 15 bytes).
PROCESS_NAME = b"setpay-ledger"
_PR_SET_NAME = 15
# Connections a worker holds beside one for each request thread (``RemoteLedgerStore``
# dials one per thread and keeps it while the thread lives): the one its ledger opens as
# it starts (the main thread's), the hold sweeper's, the health monitor's, and a spare.
OTHER_CONNECTIONS_PER_WORKER = 4
# Descriptors the ledger process needs beside its connections: the database's (a writer
# and the readers, each with its -wal and -shm), the write-lock file, the listener, the
# epoll and wake-up descriptors, the metrics and demand files, standard streams.
OTHER_DESCRIPTORS = 64


def connections_opened(config: BankConfig) -> int:
    """The connections this bank's workers may open: every thread of every worker that
    uses the ledger, twice over, since a restarted worker's replacement dials while its
    forerunner's connections may not yet be seen closed (one waiting for its answer is
    seen closed only when the answer is sent)."""
    return 2 * config.workers * (config.threads + OTHER_CONNECTIONS_PER_WORKER)


def connections_needed(config: BankConfig) -> int:
    """The connections the ledger service holds for this bank: those its workers may open
    (``connections_opened``), and never fewer than ``MAX_CONNECTIONS``.

    A connection refused for want of room is refused again each time its thread dials:
    that thread's every request is answered UNAVAILABLE for as long as the others hold
    theirs (they never let go), so the limit must cover them all."""
    return max(MAX_CONNECTIONS, connections_opened(config))


def descriptors_for(connections: int) -> int:
    """Raise this process's open-file limit (its soft limit, up to the hard one) so that
    it can hold ``connections``; the connections it can hold (at least 1).

    Beyond the limit ``accept`` would fail (EMFILE) and leave the connection waiting in
    the listener's queue, its worker's operation unanswered until its timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OTHER_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - OTHER_DESCRIPTORS))


def _name_this_process() -> None:
    """Let operators (and tests) tell the ledger process from the workers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, PROCESS_NAME, 0, 0, 0)


class _StopAsked:
    """Whether the ledger process was asked to stop, once known kept: the store's opening
    asks as it waits out a busy ledger (``SqliteLedgerStore``'s ``stopped``), taking the
    signal off the pipe that the serving loop waits on after."""

    def __init__(self, signals: StopSignals) -> None:
        self._signals = signals
        self._asked = False

    def __call__(self) -> bool:
        return self.wait(0)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a stop; whether one was asked for, then or before."""
        self._asked = self._asked or self._signals.wait(seconds)
        return self._asked


class LedgerSocket:
    """A private directory holding the ledger service's socket; removed on ``close``."""

    def __init__(self) -> None:
        """Create the directory (mode 0700, this user's only)."""
        self.directory = Path(tempfile.mkdtemp(prefix="setpay-ledger-"))
        self.path = str(self.directory / SOCKET_NAME)
        try:
            DemandBoard(demand_path(self.path), create=True)
        except BaseException:
            self.close()  # a full filesystem (ENOSPC): nothing of it is left behind
            raise

    def close(self) -> None:
        """Remove the directory and the socket in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def run_ledger_process(
    config: BankConfig,
    path: str,
    ready_fd: int,
    mask: set[int],
    *,
    with_metrics: bool,
    supervisor_pid: int,
    report: Callable[[BaseException], None] | None = None,
) -> int:
    """The ledger process's life after fork: serve until SIGTERM (or orphaned; SIGINT is
    ignored); the exit status. ``mask`` is the signal mask to restore once the handlers
    are in place. ``report`` says a start fault on the ready pipe (``gateway.child``):
    given, a stop asked as the store's opening waits out a busy ledger is reported as that
    StoreBusy and ends in exit 0 (the module docstring); without it, StoreBusy is raised."""
    stopping = StopSignals((signal.SIGTERM,))
    # A terminal's Ctrl-C reaches every process of the group at once; the workers drain
    # their calls through this process, so only the supervisor's SIGTERM stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    _name_this_process()
    scheduling.apply(config.scheduling)  # before the store starts its writer thread
    url = config.ledger_url()
    observer = None
    if with_metrics:
        # Only the commit metrics come from here, and they carry no worker label.
        metrics.enable(0)
        observer = metrics.ledger_commit
    demand = SharedDemand(DemandBoard(demand_path(path)))
    stopped = _StopAsked(stopping)
    try:
        store = SqliteLedgerStore(
            url[len("sqlite:") :], observer=observer, cpu=demand, stopped=stopped
        )
    except StoreBusy as exc:
        if report is None or not stopped():
            raise  # a fault line: started again while the ledger is busy (the docstring)
        # Its fault line, and exit 0 (the module docstring): a stop of the bank, at any
        # start, is clean; a stop of this process alone is the busy try it cut short.
        report(exc)
        log.info("ledger process stopped while another program held the ledger's write lock")
        return 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a ledger process that died
    connections = descriptors_for(connections_needed(config))
    opened = connections_opened(config)
    if connections < opened:  # the floor above what the workers open is room only
        log.warning(
            "ledger process: its open-file limit lets it hold %d connections, and the"
            " workers may open %d: requests past them are answered UNAVAILABLE; raise the"
            " bank's hard open-file limit (RLIMIT_NOFILE) or lower [gateway] workers or"
            " threads",
            connections,
            opened,
        )
    try:
        service = LedgerService(store, path, max_connections=connections)
    except BaseException:
        store.close()
        raise
    os.write(ready_fd, b"ledger\n")
    os.close(ready_fd)
    log.info("ledger process serving the SQLite ledger (pid %d)", os.getpid())
    while not stopped.wait(PARENT_CHECK_SECONDS):  # a stop asked as it opened too
        if os.getppid() != supervisor_pid:
            log.error("ledger process: the supervisor is gone; stopping")
            break
    service.close()
    log.info("ledger process stopped")
    return 0
