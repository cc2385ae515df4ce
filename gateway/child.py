"""A child of the supervisor (``gateway.workers``) from the moment it is forked: it drops
what belongs to the supervisor, runs as a worker (``gateway.worker``) or as the ledger
process (``gateway.ledger_process``), and exits with its status, never returning into the
supervisor's stack. A child that fails logs whether it could not serve or failed while
stopping; a fault the operator is to fix (a PIN, a token, a file, a port) in one line.
A child that cannot serve also reports that line on its ready pipe, after a mark saying
whether it may pass by itself (``PASSING_FAULTS``: the token away, the ledger away or
busy, ca.db busy), so the supervisor starts a replacement again only for such a cause,
and tells one failing again of the same cause from a new one (``gateway.restarts``); the
child is told the cause already logged for its index, and says the same one again at
DEBUG only. The ledger away is ``StoreAway``, as the ledger package sorts its faults: the
ledger process's connection refused, reset, ended or timed out (killed or restarting as
the replacement dialled it), the PostgreSQL server not answering, shutting down or
starting. The ledger busy is ``StoreBusy``: SQLite's write lock held past the busy
timeout by another program (a shell, a VACUUM, a long write), PostgreSQL's connection
slots all taken. ca.db busy is the CA's ``StoreBusy``: its write lock held past the busy
timeout (``setpay ca revoke``, a shell). Every other StoreUnavailable, and every other
CA StoreError, lasts until the operator acts: a damaged ledger or ca.db, a file that is
no database or cannot be created, a password refused, a database missing. Taken for
passing, each had a replacement started again for ever, at most every half minute, the
bank saying so once and going on.
The supervisor keeps a record of each child it forked (``WatchedChild``); once it has
reaped a worker, it withdraws what the worker can no longer take back itself: its count
of requests computing (``withdraw_demand``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from gateway.bank_pki import ProvisioningError
from gateway.ca.errors import CaError
from gateway.ca.errors import StoreBusy as CaStoreBusy
from gateway.demand import DemandBoard, demand_path
from gateway.ledger import LedgerError, StoreAway, StoreBusy
from gateway.ledger_process import run_ledger_process
from gateway.worker import StopFailed, WorkerPlan, run_worker
from hsm.errors import KeyBackendError, TokenAbsent, TransientBackendError

log = logging.getLogger("setpay.workers")

# The ledger process's index among the children (workers count from 0).
LEDGER_INDEX = -1
# What a child may meet while opening the bank or closing it, none of them a bug: logged
# in one line.
STARTUP_FAULTS = (KeyBackendError, ProvisioningError, LedgerError, CaError, OSError)
# What starts a fault line on the ready pipe (a ready line starts with a port number): a
# fault that may pass by itself (the token away, ``passes``), or one that will not (a
# refused PIN, a damaged file: starting again would fail again, and a PIN whose refusal
# could not be recorded would be offered again at each start, locking a real HSM's PIN).
PASSING_MARK, FAULT_MARK = "?", "!"
# Either, as the first byte of a line on the ready pipe.
REPORTED_MARKS = (PASSING_MARK.encode(), FAULT_MARK.encode())
# The longest fault line reported, mark and newline included: the supervisor reads no more.
FAULT_LINE_BYTES = 1024
# The faults a replacement's start may meet and pass: the token away, the ledger away (its
# process killed or restarting as the replacement connected, the database server not
# answering: ``StoreAway``) or busy (its write lock or every connection slot held by
# others: ``StoreBusy``), never their base StoreUnavailable, which a damaged file or a
# refused password is too. Taken for lasting, a worker replaced while the ledger process
# died with it, or while another program held SQLite's write lock, stopped the whole bank
# ("a worker failed to start"), its other worker serving. So is ca.db busy (the CA's
# ``StoreBusy``: its BEGIN IMMEDIATE as the worker opens it, past the busy timeout while
# ``setpay ca revoke`` or another program writes), never the CA's base StoreError, which a
# damaged or missing ca.db is too. The ledger process's start too may meet the ledger busy
# and pass (``gateway.restarts``).
PASSING_FAULTS = (TransientBackendError, TokenAbsent, StoreAway, StoreBusy, CaStoreBusy)


def fault_line(fault: BaseException) -> str:
    """How a child reports ``fault`` on its ready pipe: its mark, then one line, at most
    FAULT_LINE_BYTES with its newline (the same words it logs; no PIN is in an error)."""
    mark = PASSING_MARK if isinstance(fault, PASSING_FAULTS) else FAULT_MARK
    said = mark + " ".join(f"{type(fault).__name__}: {fault}".split())
    encoded = said.encode("utf-8", "backslashreplace")
    return encoded[: FAULT_LINE_BYTES - 1].decode(errors="ignore")


def passes(reported: str | None) -> bool:
    """Whether a reported fault line (``fault_line``) is one that may pass by itself."""
    return reported is not None and reported.startswith(PASSING_MARK)


def child_name(index: int) -> str:
    """How the log names the child ``index``."""
    return "the ledger process" if index == LEDGER_INDEX else f"worker {index}"


@dataclass
class WatchedChild:
    """A child as the supervisor watches it: its pipe until it says it serves (its ready
    line, read into ``received``), when it was forked and when it said so (monotonic
    clock), and whether it was killed: for not stopping in time, or a replacement for not
    serving in time (``gateway.child_deadlines``)."""

    index: int
    pid: int
    ready_fd: int | None
    started: float
    ready_at: float | None = None  # when it said it serves
    received: bytes = b""
    killed: bool = False
    fault: str | None = None  # the cause it reported on its ready pipe, if it cannot serve
    replaces: bool = False  # forked once the bank had served: a replacement
    retry: bool = False  # a replacement forked again after its index failed to start

    @property
    def name(self) -> str:
        return child_name(self.index)

    @property
    def ready(self) -> bool:
        return self.ready_at is not None


def withdraw_demand(plan: WorkerPlan, index: int) -> None:
    """In the supervisor, once worker ``index`` is reaped: zero its slot on the demand
    board (``gateway.demand``), or the ledger process's writer would linger on every
    commit until the worker's replacement starts. Nothing to do without a ledger process.

    Never raises: the supervisor must go on reaping and restarting. A board it cannot
    open (gone, unmappable) is logged; the replacement clears the slot as it starts.
    """
    if plan.ledger_socket is None:
        return
    try:
        board = DemandBoard(demand_path(plan.ledger_socket))
    except (OSError, ValueError) as exc:  # ValueError: a file too short to map
        log.warning(
            "%s: its demand slot could not be cleared (%s: %s); the ledger process may wait"
            " a moment on every commit until its replacement starts",
            child_name(index), type(exc).__name__, exc,
        )  # fmt: skip
        return
    try:
        board.withdraw(index)
    finally:
        board.close()


def _log_fault(what: str, fault: BaseException) -> None:
    if isinstance(fault, STARTUP_FAULTS):
        log.error("%s: %s: %s", what, type(fault).__name__, fault)
    else:
        log.error("%s", what, exc_info=fault)


def _report(report_fd: int | None, line: str) -> None:
    """Say ``line`` on the ready pipe; never raises (a supervisor that stopped reading, or
    a child that served: the supervisor reads no more once a child said it serves)."""
    if report_fd is not None:
        with contextlib.suppress(OSError):
            os.write(report_fd, line.encode() + b"\n")


def become_child(
    plan: WorkerPlan,
    index: int,
    ready_fd: int,
    mask: set[int],
    drop: Callable[[], None],
    known_fault: str | None = None,
) -> NoReturn:
    """Run child ``index`` in this freshly forked process and exit with its status.

    ``drop`` closes what the supervisor holds (its loop, its sockets, other children's
    ready pipes); ``mask`` is the signal mask to restore once the child's handlers are in;
    ``known_fault``: the cause of the index's last failed start, already logged.
    """
    code = 1
    what = child_name(index)
    report_fd: int | None = None
    try:
        # Kept past the ready line, which closes ``ready_fd``: a fault is reported on it.
        report_fd = os.dup(ready_fd)
        drop()
        if index == LEDGER_INDEX:
            if plan.ledger_socket is None:
                raise RuntimeError("the ledger process needs the plan's ledger socket")
            code = run_ledger_process(
                plan.config, plan.ledger_socket, ready_fd, mask,
                with_metrics=plan.metrics, supervisor_pid=plan.supervisor_pid,
                report=lambda fault: _report(report_fd, fault_line(fault)),
            )  # fmt: skip
        else:
            code = run_worker(plan, index, ready_fd, mask)
    except StopFailed as exc:
        _log_fault(f"{what} failed while stopping", exc.fault)
    except STARTUP_FAULTS as exc:
        line = fault_line(exc)
        _report(report_fd, line)
        if line == known_fault:
            log.debug("%s still cannot serve: %s", what, line)
        else:
            _log_fault(f"{what} cannot serve", exc)
    except BaseException:
        log.exception("%s failed", what)
    finally:
        # Never return into the supervisor's stack (its finally blocks are not ours).
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
