"""The ledger process: the SQLite ledger's one writer, serving every worker.

The supervisor (``gateway.workers``) forks it before the workers, when the configuration
has ``[ledger] service = true`` and a SQLite store. It opens the store (creating or
migrating the schema), serves it on a Unix socket in a directory of its own
(``gateway.ledger.service``) and reports ready; the workers then start and connect.
SIGTERM: it stops accepting, commits whatever is queued, closes the database and exits 0.
The supervisor stops it only after the last worker is gone, so no worker loses its
ledger mid-request during a clean stop; SIGINT (a terminal's Ctrl-C reaches the whole
process group) is therefore ignored here. If it dies while serving, the supervisor starts
another on the same socket path; meanwhile the workers answer UNAVAILABLE.

The socket's directory is created by the supervisor with mode 0700 under the system's
temporary directory, so its path stays far below the 108 bytes a Unix socket path may
have, wherever the bank's files are.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

from gateway import metrics, scheduling
from gateway.config import BankConfig
from gateway.demand import DemandBoard, SharedDemand, demand_path
from gateway.ledger import SqliteLedgerStore
from gateway.ledger.service import LedgerService
from gateway.stop_signals import StopSignals

log = logging.getLogger("setpay.ledger")

SOCKET_NAME = "ledger.sock"
# How often the ledger process checks that its supervisor is still there.
PARENT_CHECK_SECONDS = 1.0
# The process name ``ps -o comm`` and /proc/PID/comm show (at most 15 bytes).
PROCESS_NAME = b"setpay-ledger"
_PR_SET_NAME = 15


def _name_this_process() -> None:
    """Let operators (and tests) tell the ledger process from the workers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, PROCESS_NAME, 0, 0, 0)


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
) -> int:
    """The ledger process's life after fork: serve until SIGTERM (or orphaned; SIGINT is
    ignored); the exit status. ``mask`` is the signal mask to restore once the handlers
    are in place."""
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
    store = SqliteLedgerStore(url[len("sqlite:") :], observer=observer, cpu=demand)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a ledger process that died
    try:
        service = LedgerService(store, path)
    except BaseException:
        store.close()
        raise
    os.write(ready_fd, b"ledger\n")
    os.close(ready_fd)
    log.info("ledger process serving the SQLite ledger (pid %d)", os.getpid())
    while not stopping.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != supervisor_pid:
            log.error("ledger process: the supervisor is gone; stopping")
            break
    service.close()
    log.info("ledger process stopped")
    return 0
