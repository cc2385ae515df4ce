"""Opening a lock file of a merchant's or a wallet's directory: only a plain file there.

That directory may be shared, or restored from a backup holding anything under a lock
file's name. A symbolic link there, followed, would have the client create or open a
file elsewhere with its own rights (and the wallet then narrow that file's mode to its
lock's); a FIFO, opened read-only, would hold the open until some writer came. So a lock
file is opened without following a link (``ELOOP``) nor waiting on a FIFO, and whatever
opens that is not a plain file (a FIFO, a device, a socket) is closed and refused
(``NotPlainFile``); a directory there fails to open (``EISDIR``).

Nothing is ever written to a lock file, but it is opened for writing when it may be: on
NFS and CIFS the kernel emulates ``flock`` with ``fcntl`` byte-range locks, and an
exclusive one needs a descriptor open for writing (``flock(2)``, "NFS details"): opened
read-only, every lock of a directory on such a share would fail (``EBADF``). Only when it
may not be (``EACCES``: a file the user may read but not write; ``EROFS``: a read-only file
system; ``EPERM``: a file made immutable or append-only, ``chattr +i`` or ``+a``;
``ETXTBSY``: a file some process runs) is it opened read-only, where a local ``flock``
needs no more: such a file still locks, as it did when every lock file was opened
read-only (on NFS it could not have locked either way). ``O_NONBLOCK`` stays set on the
descriptor; ``flock`` takes no notice of it (only ``LOCK_NB`` makes a lock refuse to wait).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Not followed if a link; not waited on if a FIFO (opened read-only, one would wait for a
# writer), which is then refused as no plain file. Read-write, or read-only (the docstring).
_OPEN_FLAGS = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Why a read-write open fails that a read-only one may pass.
_NOT_WRITABLE = (errno.EACCES, errno.EROFS, errno.EPERM, errno.ETXTBSY)


class NotPlainFile(OSError):
    """A lock file's name holds something that opens but is not a plain file."""


def open_lock_file(path: Path, mode: int, dir_fd: int | None = None) -> tuple[int, bool]:
    """``path``'s descriptor, read-write or else read-only (the module docstring), created
    ``mode`` when missing, and whether this open created it (``O_EXCL``): a caller may treat
    a file it made otherwise than one it found. ``OSError`` when it cannot be opened
    (``ELOOP`` for a symbolic link, not followed), ``NotPlainFile`` when what opened is no
    plain file (closed again). ``dir_fd``: a directory's descriptor ``path`` is relative
    to, for a caller that judges the directory the file was found in, not whichever one
    the directory's path names a moment later."""
    try:
        fd, created = _open(path, os.O_RDWR, mode, dir_fd)
    except OSError as exc:
        if exc.errno not in _NOT_WRITABLE:
            raise
        fd, created = _open(path, os.O_RDONLY, mode, dir_fd)
    try:
        found = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(found):
        os.close(fd)
        raise NotPlainFile(f"{path} is not a plain file")
    return fd, created


def _open(path: Path, access: int, mode: int, dir_fd: int | None) -> tuple[int, bool]:
    """``path`` opened with ``access``, made if missing; and whether this open made it."""
    try:
        return os.open(path, access | _OPEN_FLAGS | os.O_EXCL, mode, dir_fd=dir_fd), True
    except FileExistsError:
        return os.open(path, access | _OPEN_FLAGS, mode, dir_fd=dir_fd), False


def why_unusable(exc: OSError) -> str:
    """What ``open_lock_file``'s ``exc`` says of the lock file, to follow its name."""
    if isinstance(exc, NotPlainFile):
        return "it is not a plain file"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link"
    return exc.strerror or type(exc).__name__
