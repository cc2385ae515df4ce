"""The signals of the supervisor (``gateway.workers``), held from before it prepares
anything until it has cleaned up, so that no stop signal ends it half way.

``serve`` reserves ports and makes directories (the metrics samples, the ledger socket)
before the supervisor's loop runs, and removes them after it. SIGTERM or SIGINT with
their default action in that time would end the process at once and leave the
directories behind. So both are blocked first (one sent meanwhile waits, pending); the
handlers are installed before they are unblocked, so a pending one is taken at once as a
request to stop; and the handlers stay until the cleanup is done. The workers do the same
with the mask they inherit (``gateway.worker``).

The handlers only count the requests; the interpreter's own low-level handler writes each
signal, SIGCHLD too, to a wakeup pipe that the supervisor's loop waits on. A request that
comes while the bank is already stopping changes nothing (the stop has its deadlines),
but is answered in the log (``gateway.stop_signals.RepeatNotice``), so that an operator's
second Ctrl-C is not met with silence.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Any

# What asks the supervisor to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# What wakes its loop: a stop, or a child that ended.
WATCHED = (*STOP_SIGNALS, signal.SIGCHLD)


class SupervisorSignals:
    """The supervisor's stop requests and wakeup pipe (see the module docstring)."""

    def __init__(self) -> None:
        """Block the stop signals, before anything is prepared that a stop must undo."""
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._requests = 0  # stop signals taken so far
        self._seen = 0  # of them, those ``new_request`` has told of
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    @property
    def stop_requested(self) -> bool:
        """Whether a stop signal has been taken."""
        return self._requests > 0

    def new_request(self) -> bool:
        """Whether a stop signal came since this was last asked (any number, told once)."""
        new, self._seen = self._requests > self._seen, self._requests
        return new

    def fileno(self) -> int:
        """The wakeup pipe's end, for the supervisor's selector."""
        return self._wake_r

    def catch(self) -> None:
        """Take the signals from now on; a stop signal held until now is taken at once."""
        if self._previous:
            return
        self._previous = {s: signal.signal(s, self._on_signal) for s in WATCHED}
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # Python runs the handler of a signal that was pending before this returns.
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in STOP_SIGNALS:
            self._requests += 1
        # SIGCHLD needs nothing here: the wakeup pipe wakes the loop, which reaps.

    def drain(self) -> None:
        """Empty the wakeup pipe, once the loop has woken for it."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def forget(self) -> None:
        """In a forked child: let go of the pipe (the child installs its own handlers,
        under the mask it was forked with)."""
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def close(self) -> None:
        """Once the supervisor has cleaned up: restore what was there before.

        A stop signal held since ``__init__`` (``catch`` never ran: ``serve`` failed
        first) is taken by our handler too, not by a default action that would kill the
        process before it reports why it stopped."""
        self.catch()
        signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._wake_r)
        os.close(self._wake_w)
