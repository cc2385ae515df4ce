"""How a serving command hears the signals that stop it: on a thread of its own, through
the interpreter's wakeup pipe, never in a handler that sets a ``threading.Event``.

``setpay merchant serve`` is stopped (SIGTERM, Ctrl-C) while its start-up round sends again
what a previous run left unanswered, its main thread inside that round's Event waits, or
once serving, its main thread waiting for the stop. A handler that set an Event ran in the
main thread, which may be inside that Event's ``wait`` holding its condition lock: it then
waited for itself forever. So, as in the bank's processes (``gateway.stop_signals``), the
handler does nothing: the interpreter's low-level handler writes each signal's number to a
pipe (``signal.set_wakeup_fd``) whichever thread the signal lands on, and a daemon thread
waiting on that pipe calls the command's stop; the main thread waits for that thread to
end, on no Event a handler could enter.

Not the bank's ``StopSignals`` itself: a worker takes the signals for the rest of its life
and its main thread waits on the pipe, while a command of the ``setpay`` process is still
starting when a stop must be heard, and gives the previous handlers, the wakeup fd and the
pipe back when it returns. The layers let ``cli`` import ``gateway``, but this is the
merchant's, on the client side of the bank: only ``cli`` owns a process's signals
(``clients.merchant.runtime`` is opened in-process by tests and other commands too).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Collection
from types import FrameType, TracebackType
from typing import Any

# What ``close`` writes to the pipe to end the watching thread: no signal has number 0.
_CLOSING = b"\0"
# Bytes read from the pipe at once: one per signal, its number; more simply wait their turn.
_READ_BYTES = 64
# A signal's handler as ``signal.signal`` returns it and takes it back.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class StopWatcher:
    """The signals that stop a serving command, heard on a thread of their own until
    ``close``: the first calls ``on_stop`` there, and ends ``wait``."""

    def __init__(self, signals: Collection[int], on_stop: Callable[[], None]) -> None:
        """Catch ``signals`` from now on. In the main thread only: elsewhere, as for a
        signal that cannot be caught, the ``ValueError`` or ``OSError`` of ``signal``, with
        nothing changed."""
        self._signals = frozenset(signals)
        self._on_stop = on_stop
        self._closing = False
        self._closed = False
        self._read, self._write = os.pipe()
        self._previous: dict[int, _Handler] = {}
        try:
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
            self._previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        except BaseException:
            self._close_pipe()
            raise
        try:
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, _noted)
        except BaseException:
            self._give_back()
            self._close_pipe()
            raise
        self._watcher = threading.Thread(target=self._watch, name="stop-signals", daemon=True)
        self._watcher.start()

    def wait(self) -> None:
        """Until a stop signal came and ``on_stop`` returned (or ``close`` was called)."""
        self._watcher.join()

    def close(self) -> None:
        """Put back the previous handlers and wakeup fd, end the watching thread, close the
        pipe; a signal from now on is the previous handlers'. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._give_back()
        self._closing = True
        with contextlib.suppress(BlockingIOError):  # full: the thread has bytes to read
            os.write(self._write, _CLOSING)
        self._watcher.join()
        self._close_pipe()

    def __enter__(self) -> StopWatcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _watch(self) -> None:
        while True:
            select.select([self._read], [], [])
            try:
                received = os.read(self._read, _READ_BYTES)
            except BlockingIOError:
                continue
            if self._closing:
                return
            if any(signum in self._signals for signum in received):
                self._on_stop()
                return

    def _give_back(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)

    def _close_pipe(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _noted(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the wakeup pipe has the signal already (``StopWatcher``)."""
