"""Output whose reader went away (``setpay ca list | head -1``, ``... 2>&1 | head -1``).

Python ignores SIGPIPE, so a write to a pipe whose reader closed raises BrokenPipeError;
``gone`` tells that apart from another pipe or socket breaking, and points standard
output at the null device so that nothing at exit raises again. ``cli.main`` then ends
the command with its reader-gone status, and a command whose status stands without its
text (``cli.bench``'s run with a --json report) keeps its own. ``write_text`` writes a
command's text so that a reader leaving midway is seen, buffered or not.

Standard error carries the messages along the way (a step begun, a progress bar): their
reader gone, they go to the null device and the command carries on (``say``, ``Stderr``),
its status then the one its standard output's rule gives. Losing a message must not stop
the work it describes.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import TextIO

# Characters written at a time at most: a write to a pipe of at most PIPE_BUF bytes (4 KB
# on Linux) is all or nothing, and a character is at most 4 bytes in UTF-8. A longer one,
# unbuffered (``PYTHONUNBUFFERED``, as the image runs), may be cut short by a reader that
# leaves, and the rest is dropped without an error.
_PIECE = select.PIPE_BUF // 4


def gone(broken: BrokenPipeError) -> None:
    """Standard output's reader has gone: it now goes to the null device. Otherwise
    ``broken`` is raised again: a socket's or another pipe's, a failure of its own."""
    if not _reader_gone(sys.stdout):
        raise broken
    quiet(sys.stdout)


def _reader_gone(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe (or socket) whose reader has gone: its write end then
    polls as an error (POLLERR), which no live pipe does."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def quiet(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at the null device: what is still buffered is
    flushed at exit, and would raise BrokenPipeError again there ("Exception ignored ..."),
    exit status 120. The idiom of the "Note on SIGPIPE" in Python's ``signal``
    documentation. A stream without a descriptor of its own is left as it is."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def write_text(text: str) -> None:
    """Write ``text`` to standard output, a line (or a piece of a long one) at a time, and
    flush it. A reader that leaves midway raises BrokenPipeError at the next write, where
    one write of the whole text, unbuffered, lost what the pipe did not take silently."""
    for line in text.splitlines(keepends=True):
        for start in range(0, len(line), _PIECE):
            sys.stdout.write(line[start : start + _PIECE])
    sys.stdout.flush()


def say(message: str) -> None:
    """``message`` on a line of standard error, now; nothing once its reader has gone."""
    _kept(lambda: sys.stderr.write(f"{message}\n"))
    _kept(sys.stderr.flush)


class Stderr:
    """Standard error as a progress bar draws on it (``clients.loadtest.progress``): once
    its reader has gone, the bar is drawn into the null device, and the work goes on."""

    def write(self, text: str, /) -> int:
        """Write ``text`` to standard error (as a stream does: its length)."""
        _kept(lambda: sys.stderr.write(text))
        return len(text)

    def flush(self) -> None:
        """Flush standard error."""
        _kept(sys.stderr.flush)

    def isatty(self) -> bool:
        """Whether standard error is a terminal (the bar then redraws in place)."""
        return sys.stderr.isatty()


def _kept(write: Callable[[], object]) -> None:
    """Run ``write`` on standard error; its reader gone, point it at the null device."""
    try:
        write()
    except BrokenPipeError:
        # A pipe or socket broken for good: whatever the cause, no later message would
        # reach anyone, and a failed one must not end the command.
        quiet(sys.stderr)
