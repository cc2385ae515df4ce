"""Standard output whose reader went away (``setpay ca list | head -1``).

Python ignores SIGPIPE, so a write to a pipe whose reader closed raises BrokenPipeError;
``gone`` tells that apart from another pipe or socket breaking, and points standard
output at the null device so that nothing at exit raises again. ``cli.main`` then ends
the command with its reader-gone status, and a command whose status stands without its
text (``cli.bench``'s run with a --json report) keeps its own.
"""

from __future__ import annotations

import os
import select
import sys


def gone(broken: BrokenPipeError) -> None:
    """Standard output's reader has gone: it now goes to the null device. Otherwise
    ``broken`` is raised again: a socket's or another pipe's, a failure of its own."""
    if not _reader_gone():
        raise broken
    _quiet_stdout()


def _reader_gone() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has gone: its write
    end then polls as an error (POLLERR), which no live pipe does."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _quiet_stdout() -> None:
    """Point standard output at the null device: what is still buffered is flushed at
    exit, and would raise BrokenPipeError again there ("Exception ignored ..."), exit
    status 120. The idiom of the "Note on SIGPIPE" in Python's ``signal`` documentation."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)
