"""How a bank process waits for the signals that stop it (a worker, the ledger process).

The supervisor (``gateway.workers``) keeps its own wake-up pipe, which also carries
SIGCHLD; this is the plain form for a process that only has to stop.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Collection
from types import FrameType


class StopSignals:
    """The signals that stop this process, waited for by its main thread.

    Not with a handler that sets a ``threading.Event``: the handler runs in the main thread,
    which may be inside that Event's ``wait`` holding its lock, and would then wait for
    itself forever; and a signal the kernel hands to another thread (as it may when two
    come together: Ctrl-C's SIGINT and the supervisor's SIGTERM) interrupts no wait of the
    main thread, so it was noticed only when that wait timed out. Instead the
    interpreter's own low-level handler writes every signal to a pipe
    (``signal.set_wakeup_fd``), whichever thread it lands on, and the main thread waits on
    the pipe. Set up in the main thread, before any other thread starts.
    """

    def __init__(self, signals: Collection[int]) -> None:
        """Catch ``signals`` from now on (they stop this process)."""
        self._signals = frozenset(signals)
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in self._signals:
            signal.signal(signum, _noted)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a stop signal; whether one came."""
        ready, _, _ = select.select([self._read], [], [], seconds)
        if not ready:
            return False
        try:
            received = os.read(self._read, 64)  # one byte per signal, its number
        except BlockingIOError:
            return False
        return any(signum in self._signals for signum in received)


def _noted(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the wakeup pipe has the signal already (``StopSignals``)."""
