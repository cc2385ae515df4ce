"""How a child of the supervisor (``gateway.workers``) ended, as the log says it, and what
its end makes of the bank's exit status when the bank was stopping.

The wait status. A child that exited says "exit status N"; one a signal ended says
"signal NAME", or its number for a signal the enum has no name for (a real-time one):
the supervisor must go on reaping whatever ended its child.

SIGBUS. A process dies of SIGBUS when it touches a page of a file it mapped into memory
that the file cannot back: a page past the file's end (the file truncated under it), or
a page with no disk blocks on a filesystem that has none left to give. The bank's
processes map prometheus_client's sample files, whose blocks ``gateway.metrics_files``
reserves before they are mapped; a filesystem that cannot reserve them (a copy-on-write
one, one that stores zeros as holes), a file truncated by something else, or a client
release whose files escape the reservation still ends a process that way. So the line
of a child that died of SIGBUS names that likely cause, and, when metrics are on, the
sample directory to look at (``ended``). No other signal is given a cause: SIGKILL may
be the operator's, the kernel's OOM killer or a container's limit, SIGSEGV any native
library; a guess there would send the operator the wrong way.

Once the bank is stopping (``stopped``): a child that exits 0 stopped cleanly; a worker
that exits CALLS_CUT stopped but cut calls at the end of its grace period; anything else
failed as it stopped, and the bank exits 1 (``gateway.workers`` sums them up).
"""

from __future__ import annotations

import enum
import logging
import signal
from pathlib import Path

from gateway.child import LEDGER_INDEX
from gateway.worker import CALLS_CUT

log = logging.getLogger("setpay.workers")


def ended(code: int, samples: Path | None) -> str:
    """How a child whose exit code (``os.waitstatus_to_exitcode``) is ``code`` ended, for
    the log; ``samples``: the metrics sample directory its process was given, or None
    when metrics are off (see the module docstring)."""
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:  # a signal the enum does not name (a real-time one)
        return f"signal {-code}"
    if -code != signal.SIGBUS:
        return f"signal {name}"
    if samples is None:
        cause = (
            "a file it had mapped into memory could not back a page: a full filesystem,"
            " or the file truncated under it"
        )
    else:
        cause = (
            "a file it had mapped into memory could not back a page: most likely a metrics"
            f" sample file under {samples}, whose filesystem is full or copy-on-write,"
            " or the file truncated under it"
        )
    return f"signal {name} ({cause})"


class Stopped(enum.Enum):
    """How a child ended once the bank was stopping."""

    CLEANLY = "cleanly"
    CUT_CALLS = "cut calls"  # a worker cut calls in flight at the end of its grace period
    FAILED = "failed"


def stopped(name: str, pid: int, index: int, code: int, samples: Path | None) -> Stopped:
    """Log how child ``name`` (``pid``, ``index``) ended, the bank stopping, with exit
    code ``code`` (``samples`` as ``ended`` takes it); what its end was."""
    if code == CALLS_CUT and index != LEDGER_INDEX:
        log.warning("%s (pid %d) stopped, but cut calls in flight", name, pid)
        return Stopped.CUT_CALLS
    if code != 0:
        log.error("%s (pid %d) stopped with %s", name, pid, ended(code, samples))
        return Stopped.FAILED
    log.info("%s (pid %d) stopped", name, pid)
    return Stopped.CLEANLY
