"""How ``setpay bench authorize`` ends when it is told to stop: as Ctrl-C ends it.

The servers the bench starts (a bank, the ceiling, the echo) run in sessions of their own
(``clients.loadtest.spawn``), so that the terminal's signals do not reach them behind the
bench's back: the bench stops them itself on its way out, and removes its temporary
directory, which holds the bank it made and that bank's keys. Python's own action for
SIGTERM (a kill, a container's stop, timeout(1)) and SIGHUP (the terminal closed, an SSH
session dropped) ends the process at once, running none of that: the bank served on, on
its port, with its keys left on disk. So both raise ``Stopped`` (a ``SystemExit``: exit
status 1, the run failed), which unwinds the run like Ctrl-C's ``KeyboardInterrupt``.

A SIGHUP already ignored when the bench starts is left ignored: ``nohup`` asked for a run
that outlives its terminal, and it still stops what it started when it ends.

SIGKILL (the OOM killer's too) cannot be caught: nothing here runs. The servers stop by
themselves then, each seeing its lifeline end (``clients.loadtest.spawn``), as SIGTERM
stops them; once the last of them is gone, the bench's reaper removes the temporary
directory, the bank it made and its keys (``cli.bench_workdir``).
"""

from __future__ import annotations

import signal
import threading

# The signals that end a run as Ctrl-C does (SIGINT is Python's KeyboardInterrupt on its
# own); SIGHUP only when its action is not "ignore" already (``nohup``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(SystemExit):
    """A stop signal ended the run (exit status 1); ``name``: which, as the report says."""

    def __init__(self, signum: int) -> None:
        super().__init__(1)
        self.name = signal.Signals(signum).name


def exit_on_stop_signals() -> None:
    """From now on each of STOP_SIGNALS raises ``Stopped`` (the module docstring)."""
    # Handlers can be set in the main thread only; elsewhere the signals stay as they were.
    if threading.current_thread() is not threading.main_thread():
        return
    for number in STOP_SIGNALS:
        if number != signal.SIGHUP or signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _stopped)


def _stopped(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def failure(exc: BaseException) -> str:
    """Why a run failed, as the failed run's report says it (the error's own message)."""
    if isinstance(exc, Stopped):
        return f"stopped by {exc.name}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, SystemExit):
        return "stopped"
    return str(exc) or type(exc).__name__
