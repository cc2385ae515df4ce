"""How a bank process waits for the signals that stop it (a worker, the ledger process).

The supervisor (``gateway.workers``) keeps its own wake-up pipe, which also carries
SIGCHLD; this is the plain form for a process that only has to stop. The supervisor and
a worker answer a stop signal that comes while already stopping in the log
(``RepeatNotice``); the ledger process does not: it ignores SIGINT, and is sent SIGTERM
only once the last worker has gone, when its stop is only closing the store.

A lifeline: the read end of a pipe whose write end only the process that started this one
holds (``setpay bench`` for the servers it spawns: ``--lifeline-fd``). When that process
dies, however it dies (SIGKILL, the OOM killer), the kernel closes its write end and the
pipe reads its end: a stop, as SIGTERM's. Neither a signal sent at fork (``preexec_fn``
with ``PR_SET_PDEATHSIG`` is unsafe in a process that has used gRPC), nor ``getppid``,
which names the new parent (a subreaper) rather than none, tells of it so surely.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import stat
import threading
import time
from collections.abc import Callable, Collection
from types import FrameType

# How often the thread that answers repeated stop signals looks whether the stop is done:
# it only ends that thread, a daemon, so a second costs nothing.
ANSWER_POLL_SECONDS = 1.0
# A stop request within this long of the stop's beginning, or of the last notice, is not
# answered again: a terminal's Ctrl-C reaches every process of the bank, each worker gets
# the supervisor's SIGTERM too, and a held key repeats; one line a second says it all.
REPEAT_NOTICE_SECONDS = 1.0
# Bytes read from a lifeline at once: nothing is written to one, so whatever is read is
# dropped, and its end is what is waited for.
LIFELINE_READ_BYTES = 64
# The largest descriptor number there can be: a C int.
MAX_FD = 2**31 - 1


class StopSignals:
    """The signals that stop this process, waited for by its main thread.

    Not with a handler that sets a ``threading.Event``: the handler runs in the main thread,
    which may be inside that Event's ``wait`` holding its lock, and would then wait for
    itself forever; and a signal the kernel hands to another thread (as it may when two
    come together: Ctrl-C's SIGINT and the supervisor's SIGTERM) interrupts no wait of the
    main thread, so it was noticed only when that wait timed out. Instead the
    interpreter's own low-level handler writes every signal to a pipe
    (``signal.set_wakeup_fd``), whichever thread it lands on, and the main thread waits on
    the pipe. Set up in the main thread, before any other thread starts. Once the main
    thread stops waiting, a stop under way, ``answer_repeats`` reads the pipe instead.
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

    def answer_repeats(self, answer: Callable[[], None], done: threading.Event) -> None:
        """Once stopping, while the main thread drains: call ``answer`` on a thread of its
        own for each stop signal that comes before ``done`` is set (signals that come
        together are one)."""

        def watch() -> None:
            while not done.is_set():
                if self.wait(ANSWER_POLL_SECONDS):
                    answer()

        threading.Thread(target=watch, name="stop-repeats", daemon=True).start()


def _noted(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the wakeup pipe has the signal already (``StopSignals``)."""


class RepeatNotice:
    """Says at INFO that a stop request came while already stopping, and when the stop is
    due to end: at most once per REPEAT_NOTICE_SECONDS, and not within that long of the
    stop's beginning."""

    def __init__(
        self,
        log: logging.Logger,
        said: str,
        ends: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The stop begins now; ``said`` leads the notice, ``ends`` is when the stop is due
        to end (on ``clock``)."""
        self._log = log
        self._said = said
        self._ends = ends
        self._clock = clock
        self._quiet_until = clock() + REPEAT_NOTICE_SECONDS

    def repeated(self) -> None:
        """A stop request came while already stopping."""
        now = self._clock()
        if now >= self._quiet_until:
            self._quiet_until = now + REPEAT_NOTICE_SECONDS
            self._log.info("%s within %.0f s", self._said, max(0.0, self._ends() - now))


def open_lifeline(fd: int) -> int:
    """``fd``, inherited, as a lifeline (the module docstring): non-blocking, and not passed
    on to a program this process runs. A ``ValueError`` saying why when ``fd`` is not open
    or is no pipe's read end. Only that: a file's end is there at once; a pipe's write end
    (``--lifeline-fd 1`` with the output piped) cannot be read, and a socket's end may come
    as an error (a reset) rather than as an end, neither telling what a lifeline must."""
    try:
        mode = os.fstat(fd).st_mode
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except (OSError, OverflowError):
        raise ValueError(f"descriptor {fd} is not open") from None
    if not stat.S_ISFIFO(mode) or access != os.O_RDONLY:
        raise ValueError(f"descriptor {fd} is no pipe's read end")
    os.set_blocking(fd, False)
    os.set_inheritable(fd, False)
    return fd


def lifeline_ended(fd: int) -> bool:
    """Whether the lifeline ``fd`` (``open_lifeline``) has reached its end: the process
    that started this one is gone. Anything written to it is read and dropped. A read that
    fails otherwise than for want of data is an end too: the lifeline can tell of nothing
    more, and an error raised here would end the loop that hears the stop signals."""
    try:
        return os.read(fd, LIFELINE_READ_BYTES) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
