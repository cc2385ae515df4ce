"""Opening a lock file of a merchant's or a wallet's directory: only a plain file there.

That directory may be shared, or restored from a backup holding anything under a lock
file's name. A symbolic link there, followed, would have the client create or open a
file elsewhere with its own rights (and the wallet then narrow that file's mode to its
lock's); a FIFO, opened read-only, would hold the open until some writer came. So a lock
file is opened without following a link (``ELOOP``) nor waiting on a FIFO, and whatever
opens that is not a plain file (a FIFO, a device, a socket) is closed and refused
(``NotPlainFile``); a directory there fails to open (``EISDIR``).

Nothing is ever written to a lock file, and a ``flock`` needs no more than a read-only
descriptor: it is opened read-only, so that one the user may read but not write still
locks. ``O_NONBLOCK`` stays set on the descriptor; ``flock`` takes no notice of it (only
``LOCK_NB`` makes a lock refuse to wait).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Read-only: a flock needs no more. Not followed if a link; not waited on if a FIFO
# (opened read-only, one would wait for a writer), which is then refused as no plain file.
_OPEN_FLAGS = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class NotPlainFile(OSError):
    """A lock file's name holds something that opens but is not a plain file."""


def open_lock_file(path: Path, mode: int) -> tuple[int, bool]:
    """``path``'s descriptor, read-only, created ``mode`` when missing, and whether this
    open created it (``O_EXCL``): a caller may treat a file it made otherwise than one it
    found. ``OSError`` when it cannot be opened (``ELOOP`` for a symbolic link, not
    followed), ``NotPlainFile`` when what opened is no plain file (closed again)."""
    try:
        fd, created = os.open(path, _OPEN_FLAGS | os.O_EXCL, mode), True
    except FileExistsError:
        fd, created = os.open(path, _OPEN_FLAGS, mode), False
    try:
        found = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(found):
        os.close(fd)
        raise NotPlainFile(f"{path} is not a plain file")
    return fd, created


def why_unusable(exc: OSError) -> str:
    """What ``open_lock_file``'s ``exc`` says of the lock file, to follow its name."""
    if isinstance(exc, NotPlainFile):
        return "it is not a plain file"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    return exc.strerror or type(exc).__name__
