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

A bank that ``setpay bench`` spawned is given a lifeline too (``--lifeline-fd``:
``gateway.stop_signals``): its end, the bench gone however it went, is one more request to
stop, taken as SIGTERM is. The loop's selector watches it beside the wakeup pipe, so the
supervisor stays single-threaded; once ended it is watched no more (a pipe at its end
reads as ready for ever). A bank served by hand has none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
from types import FrameType
from typing import Any

from gateway.stop_signals import lifeline_ended

log = logging.getLogger("setpay.workers")

# What asks the supervisor to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# What wakes its loop: a stop, or a child that ended.
WATCHED = (*STOP_SIGNALS, signal.SIGCHLD)


class SupervisorSignals:
    """The supervisor's stop requests and wakeup pipe (see the module docstring)."""

    def __init__(self, lifeline: int | None = None) -> None:
        """Block the stop signals, before anything is prepared that a stop must undo.
        ``lifeline``: a pipe's read end (``gateway.stop_signals.open_lifeline``) whose end,
        or a read of it that fails, is a stop request too; closed with the rest."""
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._lifeline = lifeline
        self._selector: selectors.BaseSelector | None = None  # once ``watch`` ran
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

    def watch(self, selector: selectors.BaseSelector, data: object) -> None:
        """Have ``selector`` wake with ``data`` for the wakeup pipe and the lifeline, if
        any; ``drain`` once it did. A lifeline that has ended already is a request now."""
        selector.register(self._wake_r, selectors.EVENT_READ, data)
        if self._lifeline is not None:
            self._selector = selector
            selector.register(self._lifeline, selectors.EVENT_READ, data)
            self._look_at_lifeline()

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
        """Empty the wakeup pipe, once the loop has woken for it or the lifeline."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        self._look_at_lifeline()

    def _look_at_lifeline(self) -> None:
        """Its end, if it came: one stop request, and the lifeline watched no more."""
        if self._selector is None or self._lifeline is None:
            return
        if lifeline_ended(self._lifeline):
            self._selector.unregister(self._lifeline)
            self._selector = None
            log.warning("the process that started the bank is gone (its lifeline ended): stopping")
            self._requests += 1

    def forget(self) -> None:
        """In a forked child: let go of the pipe and the lifeline (the child installs its
        own handlers, under the mask it was forked with)."""
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._close_lifeline()

    def _close_lifeline(self) -> None:
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            os.close(lifeline)

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
        self._close_lifeline()
