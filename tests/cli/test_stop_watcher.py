"""``cli.stop_watcher.StopWatcher``: a stop signal is heard on the watching thread, which
calls the command's stop and ends ``wait``; another signal stops nothing; a stop signal
after the first is answered once ``answer_repeats`` says how, and is nothing before;
``close`` puts back the handlers and wakeup fd it found and closes its pipe, and ends its
thread and closes its pipe even when the giving back is interrupted: a Ctrl-C as SIGINT's
handler comes back finds all else back, a close cut shorter never closes the pipe the
wakeup fd still names, and the next close finishes it; where it cannot catch
the signals (not the main thread, a signal that cannot be caught) it refuses, nothing
changed.

The signals are sent to this process: SIGURG and SIGWINCH, which by default do nothing, so
that a watcher that failed to catch them fails its test instead of ending the run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from cli import stop_watcher
from cli.stop_watcher import StopWatcher

STOP = signal.SIGURG
OTHER = signal.SIGWINCH
# Bounds a wait on the watching thread: it answers at once; a loaded machine gets seconds.
WAIT_SECONDS = 10.0
# How long a signal that must stop nothing is given to (wrongly) stop: the watcher answers
# a stop signal within milliseconds.
QUIET_SECONDS = 0.3

_handled: list[int] = []


def _before(signum: int, frame: FrameType | None) -> None:
    """The handler the watcher finds, and must put back."""
    _handled.append(signum)


class Found:
    """The handlers and wakeup fd a command finds: the test's own."""

    def __init__(self, wakeup: int) -> None:
        self.wakeup = wakeup

    def back(self) -> bool:
        """Whether they are in place again."""
        handlers = all(signal.getsignal(signum) is _before for signum in (STOP, OTHER))
        return handlers and signal.set_wakeup_fd(self.wakeup) == self.wakeup


@pytest.fixture
def found() -> Iterator[Found]:
    previous = {signum: signal.signal(signum, _before) for signum in (STOP, OTHER)}
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous_wakeup = signal.set_wakeup_fd(write)
    _handled.clear()
    try:
        yield Found(write)
    finally:
        signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(read)
        os.close(write)


@pytest.fixture
def pipes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors of every pipe the watcher opens."""
    opened: list[int] = []
    real = os.pipe

    def pipe() -> tuple[int, int]:
        ends = real()
        opened.extend(ends)
        return ends

    monkeypatch.setattr(os, "pipe", pipe)  # the watcher's, called while the test runs
    return opened


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_a_stop_signal_calls_the_stop_on_the_watching_thread_and_ends_the_wait(
    found: Found, pipes: list[int]
) -> None:
    callers: list[threading.Thread] = []
    heard = threading.Event()

    def on_stop() -> None:
        callers.append(threading.current_thread())
        heard.set()

    with StopWatcher((STOP,), on_stop) as watcher:
        assert signal.getsignal(STOP) is not _before
        os.kill(os.getpid(), STOP)
        assert heard.wait(WAIT_SECONDS), "the stop signal was not heard"
        watcher.wait()
        os.kill(os.getpid(), STOP)  # a second one, once stopping: nothing more is called
        time.sleep(QUIET_SECONDS)
    assert len(callers) == 1 and callers[0] is not threading.main_thread()
    assert _handled == []  # the test's handler was not the one run while watching
    assert found.back()
    assert pipes and all(_closed(fd) for fd in pipes)


def test_another_signal_stops_nothing(found: Found) -> None:
    heard = threading.Event()
    with StopWatcher((STOP,), heard.set) as watcher:
        os.kill(os.getpid(), OTHER)  # its handler (the test's) runs; its byte reaches the pipe
        give_up = time.monotonic() + WAIT_SECONDS
        while OTHER not in _handled:
            assert time.monotonic() < give_up, "the other signal's own handler did not run"
            time.sleep(0.01)
        assert not heard.wait(QUIET_SECONDS), "a signal not among the stop signals stopped"
    watcher.wait()  # closed: ends without a stop
    assert not heard.is_set()
    assert found.back()


def test_closing_without_a_signal_ends_the_watcher_and_puts_everything_back(
    found: Found, pipes: list[int]
) -> None:
    heard = threading.Event()
    watcher = StopWatcher((STOP, OTHER), heard.set)
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    assert current == pipes[1]  # its pipe's, while it watches
    watcher.close()
    watcher.wait()
    assert not heard.is_set()
    assert found.back()
    assert all(_closed(fd) for fd in pipes)
    watcher.close()  # twice: harmless
    assert found.back()


def test_outside_the_main_thread_it_refuses_and_changes_nothing(
    found: Found, pipes: list[int]
) -> None:
    refused: list[BaseException] = []

    def construct() -> None:
        try:
            StopWatcher((STOP,), lambda: None)
        except ValueError as exc:
            refused.append(exc)

    thread = threading.Thread(target=construct)
    thread.start()
    thread.join(WAIT_SECONDS)
    assert len(refused) == 1, "a watcher was set up outside the main thread"
    assert "main thread" in str(refused[0])
    assert found.back()
    assert pipes and all(_closed(fd) for fd in pipes)


def test_a_signal_that_cannot_be_caught_is_refused_and_changes_nothing(
    found: Found, pipes: list[int]
) -> None:
    with pytest.raises(OSError):
        StopWatcher((STOP, signal.SIGKILL, OTHER), lambda: None)
    assert found.back()
    assert pipes and all(_closed(fd) for fd in pipes)


def test_a_stop_signal_while_draining_is_answered_on_the_watching_thread(found: Found) -> None:
    """Once stopping, the command drains still watched: a stop signal is neither the
    default handlers' (the process's end, a KeyboardInterrupt) nor a second stop, but the
    answer ``answer_repeats`` gives, each time, on the watching thread."""
    stops: list[threading.Thread] = []
    answers: list[threading.Thread] = []
    answered = threading.Semaphore(0)

    def answer() -> None:
        answers.append(threading.current_thread())
        answered.release()

    with StopWatcher((STOP,), lambda: stops.append(threading.current_thread())) as watcher:
        os.kill(os.getpid(), STOP)
        watcher.wait()
        os.kill(os.getpid(), STOP)  # before there is an answer: nothing
        time.sleep(QUIET_SECONDS)
        assert answers == []
        watcher.answer_repeats(answer)
        assert signal.getsignal(STOP) is not _before  # still the watcher's while draining
        for _ in range(2):
            os.kill(os.getpid(), STOP)
            assert answered.acquire(timeout=WAIT_SECONDS), "a stop while draining unanswered"
        os.kill(os.getpid(), OTHER)  # not a stop signal: no answer
        time.sleep(QUIET_SECONDS)
    assert len(stops) == 1, "a stop signal while draining stopped again"
    assert len(answers) == 2 and all(t is stops[0] for t in answers)
    assert stops[0] is not threading.main_thread()
    assert _handled == [OTHER]  # only the other signal reached the test's handler
    assert found.back()


def test_a_close_interrupted_while_giving_back_still_ends_the_thread_and_closes_the_pipe(
    found: Found, pipes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands just after the previous SIGINT handler is back raises
    KeyboardInterrupt in ``close``: it passes on, but only once the watching thread has
    ended and the pipe is closed; closing again is harmless.

    Before: ``close`` stopped there, the thread left waiting on the pipe and both its ends
    open, and a second ``close`` did nothing."""
    watcher = StopWatcher((STOP,), lambda: None)
    give_back = watcher._give_back
    pending = [KeyboardInterrupt]  # one Ctrl-C

    def interrupted() -> None:
        give_back()
        if pending:
            raise pending.pop()  # as the SIGINT handler just put back would

    monkeypatch.setattr(watcher, "_give_back", interrupted)
    with pytest.raises(KeyboardInterrupt):
        watcher.close()
    assert not [t for t in threading.enumerate() if t.name == "stop-signals"], "thread left"
    assert pipes and all(_closed(fd) for fd in pipes), "the pipe left open"
    assert found.back()
    watcher.close()  # again: nothing more to do, nothing raised
    watcher.wait()  # closed: returns at once
    assert found.back()


class _Cut:
    """The signal module as ``cli.stop_watcher`` sees it, but for one call that is cut
    short by a Ctrl-C: ``signal.signal`` for SIGINT once it is set (as the default handler
    put back raises for a Ctrl-C pending), or ``set_wakeup_fd`` before it is."""

    def __init__(self, cut: str) -> None:
        self.cut = cut

    def __getattr__(self, name: str) -> object:
        return getattr(signal, name)

    def signal(self, signum: int, handler: object) -> object:
        previous = signal.signal(signum, handler)  # type: ignore[arg-type]
        if self.cut == "signal" and signum == signal.SIGINT:
            self.cut = ""
            raise KeyboardInterrupt
        return previous

    def set_wakeup_fd(self, fd: int, **kwargs: bool) -> int:
        if self.cut == "set_wakeup_fd":
            self.cut = ""
            raise KeyboardInterrupt
        return signal.set_wakeup_fd(fd, **kwargs)


@pytest.fixture
def sigint() -> Iterator[None]:
    """SIGINT's handler the test's own while it runs: a watcher's, or a default handler
    the test failed to put back, never meets a real Ctrl-C."""
    previous = signal.signal(signal.SIGINT, _before)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_as_the_sigint_handler_comes_back_finds_everything_else_back(
    found: Found, pipes: list[int], sigint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ctrl-C pending when SIGINT's handler is put back cuts ``close`` short there:
    SIGINT's goes last, so the other handlers and the wakeup fd are back already.

    Before: SIGINT's went back first; the other handler stayed the watcher's (a SIGTERM
    did nothing from then on), the wakeup fd named the pipe closed after it (the next file
    opened took its number, and every signal wrote a byte into that file), and a second
    close did nothing."""
    watcher = StopWatcher((STOP, signal.SIGINT), lambda: None)
    monkeypatch.setattr(stop_watcher, "signal", _Cut("signal"))
    with pytest.raises(KeyboardInterrupt):
        watcher.close()
    monkeypatch.setattr(stop_watcher, "signal", signal)
    assert signal.getsignal(signal.SIGINT) is _before
    assert found.back(), "the other handler or the wakeup fd not back"
    assert not [t for t in threading.enumerate() if t.name == "stop-signals"], "thread left"
    assert pipes and all(_closed(fd) for fd in pipes)
    watcher.close()  # again: nothing left to do
    assert found.back()


def test_a_close_cut_short_before_the_wakeup_fd_is_back_keeps_the_pipe_for_the_next(
    found: Found, pipes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut short before the wakeup fd is back, ``close`` ends the thread but leaves the
    pipe the wakeup fd still names open; the next close gives the rest back and closes it.

    Before: the pipe was closed with the wakeup fd naming it, and the second close did
    nothing (already closed), the wakeup fd never put back."""
    watcher = StopWatcher((STOP, OTHER), lambda: None)
    monkeypatch.setattr(stop_watcher, "signal", _Cut("set_wakeup_fd"))
    with pytest.raises(KeyboardInterrupt):
        watcher.close()
    monkeypatch.setattr(stop_watcher, "signal", signal)
    current = signal.set_wakeup_fd(-1)
    assert current == pipes[1]  # not given back yet: still the watcher's pipe ...
    assert not any(_closed(fd) for fd in pipes), "the pipe closed while the wakeup fd names it"
    signal.set_wakeup_fd(current)
    assert not [t for t in threading.enumerate() if t.name == "stop-signals"], "thread left"
    watcher.close()  # ... which the next close gives back, and closes
    assert found.back()
    assert all(_closed(fd) for fd in pipes)
