"""How a serving command hears the signals that stop it: on a thread of its own, through
the interpreter's wakeup pipe, never in a handler that sets a ``threading.Event``.

``setpay merchant serve`` is stopped (SIGTERM, Ctrl-C) while its start-up round sends again
what a previous run left unanswered, its main thread inside that round's Event waits, or
once serving, its main thread waiting for the stop. A handler that set an Event ran in the
main thread, which may be inside that Event's ``wait`` holding its condition lock: it then
waited for itself forever. So, as in the bank's processes (``gateway.stop_signals``), the
handler does nothing: the interpreter's low-level handler writes each signal's number to a
pipe (``signal.set_wakeup_fd``) whichever thread the signal lands on, and a daemon thread
waiting on that pipe calls the command's stop; the main thread waits for that thread's
word, on no Event a handler could enter.

The watching goes on while the command drains, until ``close``: a stop signal then is
answered (``answer_repeats``: ``merchant serve`` says so in the log, as the bank's
processes do with ``gateway.stop_signals.RepeatNotice``), not left to the default handlers,
which would end the process mid-drain (SIGTERM) or raise ``KeyboardInterrupt`` in it
(SIGINT), the store and key backend never closed. ``close`` gives everything back even when
cut short: the SIGINT handler it puts back may raise ``KeyboardInterrupt`` in it, from the
next bytecode on. So SIGINT's handler goes back last, after the wakeup fd; each thing given
back is forgotten, so that a close cut short is finished by the next; and the pipe is
closed only once the wakeup fd names it no more (closed before, its descriptor number,
reused by the next file opened, would get a byte written into it by every signal).

A command some other process started and stops (``setpay bench serve``, by ``setpay bench``)
may be given that process's lifeline too (``gateway.stop_signals``): the watching thread
waits on it beside the pipe, and its end is heard as the first stop signal is (``on_stop``),
then watched no more. The command owns the descriptor and closes it; ``close`` does not.

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
import selectors
import signal
import threading
from collections.abc import Callable, Collection
from types import FrameType, TracebackType
from typing import Any

from gateway.stop_signals import lifeline_ended

# What ``close`` writes to the pipe to end the watching thread: no signal has number 0.
_CLOSING = b"\0"
# Bytes read from the pipe at once: one per signal, its number; more simply wait their turn.
_READ_BYTES = 64
# A signal's handler as ``signal.signal`` returns it and takes it back.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class StopWatcher:
    """The signals that stop a serving command, heard on a thread of their own until
    ``close``: the first calls ``on_stop`` there, and ends ``wait``; each later one is
    answered, once ``answer_repeats`` says how."""

    def __init__(
        self,
        signals: Collection[int],
        on_stop: Callable[[], None],
        *,
        lifeline: int | None = None,
    ) -> None:
        """Catch ``signals`` from now on, and the end of ``lifeline`` (a descriptor from
        ``gateway.stop_signals.open_lifeline``), if given. In the main thread only:
        elsewhere, as for a signal that cannot be caught, the ``ValueError`` or ``OSError``
        of ``signal``, with nothing changed."""
        self._signals = frozenset(signals)
        self._on_stop = on_stop
        self._lifeline = lifeline
        self._answer: Callable[[], None] | None = None
        self._heard = threading.Event()  # set by the watching thread or ``close``, no handler
        self._closing = False
        self._closed = False
        self._read, self._write = os.pipe()
        # What is still to give back: the handlers found, and whether the wakeup fd is ours.
        self._previous: dict[int, _Handler] = {}
        self._wakeup_held = False
        try:
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
            self._previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            self._wakeup_held = True
        except BaseException:
            self._close_pipe()
            raise
        try:
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, _noted)
        except BaseException:
            try:
                self._give_back()
            finally:
                if not self._wakeup_held:
                    self._close_pipe()
            raise
        self._watcher = threading.Thread(target=self._watch, name="stop-signals", daemon=True)
        self._watcher.start()

    def wait(self) -> None:
        """Until a stop signal came and ``on_stop`` returned (or ``close`` was called)."""
        self._heard.wait()

    def answer_repeats(self, answer: Callable[[], None]) -> None:
        """From now on, call ``answer`` on the watching thread for each stop signal after
        the first (signals that come together are one): the command is draining, and a
        stop signal there changes nothing but must not read as a command that hangs."""
        self._answer = answer

    def close(self) -> None:
        """Put back the previous handlers and wakeup fd, end the watching thread, close the
        pipe; a signal from now on is the previous handlers'. Closing twice is harmless.

        Whatever interrupts it passes on once the thread is ended, and the pipe closed if
        the wakeup fd is back. A ``KeyboardInterrupt`` from the SIGINT handler put back
        comes when all else is back (SIGINT's goes last); anything that cuts it shorter (a
        handler put back that raises, a second Ctrl-C while joining) leaves it to the next
        close to finish, which then gives back what is left and closes the pipe.
        """
        if self._closed:
            return
        try:
            self._give_back()
        finally:
            self._closing = True
            self._heard.set()
            if self._write >= 0:  # not closed by a close cut short after it
                with contextlib.suppress(BlockingIOError):  # full: the thread has bytes to read
                    os.write(self._write, _CLOSING)
            self._watcher.join()
            if not self._wakeup_held:  # never the pipe the wakeup fd still writes to
                self._close_pipe()
        self._closed = True  # reached only with everything given back

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
        # A selector, not ``select.select``: that refuses a descriptor numbered 1024 or
        # more, as an inherited lifeline may be (``pass_fds`` keeps the parent's number),
        # and its ValueError would end this thread, no stop signal heard from then on.
        with selectors.DefaultSelector() as selector:
            selector.register(self._read, selectors.EVENT_READ)
            if self._lifeline is not None:
                selector.register(self._lifeline, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._lifeline in ready and lifeline_ended(self._lifeline):
                    selector.unregister(self._lifeline)  # at its end, ready for ever
                    if not self._closing:
                        self._stop_requested()
                if self._read not in ready:
                    continue
                try:
                    received = os.read(self._read, _READ_BYTES)
                except BlockingIOError:
                    continue
                if self._closing:
                    return
                if any(signum in self._signals for signum in received):
                    self._stop_requested()

    def _stop_requested(self) -> None:
        """The first request calls ``on_stop``; each later one is answered."""
        if not self._heard.is_set():
            try:
                self._on_stop()
            finally:
                self._heard.set()
        elif self._answer is not None:
            self._answer()

    def _give_back(self) -> None:
        """Put back what is still to give back, each forgotten once back: the handlers but
        SIGINT's, the wakeup fd, then SIGINT's, whose ``KeyboardInterrupt`` then finds
        nothing else left (see the module docstring)."""
        for signum in [s for s in self._previous if s != signal.SIGINT]:
            signal.signal(signum, self._previous[signum])
            del self._previous[signum]
        if self._wakeup_held:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._wakeup_held = False
        if signal.SIGINT in self._previous:
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
            del self._previous[signal.SIGINT]

    def _close_pipe(self) -> None:
        # Each end forgotten as it is closed: a close finished by a second one closes no
        # descriptor twice (by then another file's).
        read, self._read = self._read, -1
        if read >= 0:
            os.close(read)
        write, self._write = self._write, -1
        if write >= 0:
            os.close(write)


def _noted(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the wakeup pipe has the signal already (``StopWatcher``)."""
