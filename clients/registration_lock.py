"""One ``register`` or ``renew`` at a time in a merchant's or a wallet's directory.

Each makes new key versions and records its request before the request leaves (the
merchant in ``registration.json``, the wallet in its sealed card file), then removes or
reseals that record once the CA's answer is stored or its refusal heard. Two at once (two
terminals, a cron job beside an operator) each find no record, or read the card file
before the other wrote it, and write their own over the other's:

- a merchant: the CA certifies one and refuses the other (REJECTED_BY_AGENT: the ID holds
  live certificates), and the refused one removes the record, whoever wrote it. The
  certified one's answer lost then (a deadline, the process killed) leaves certificates
  the merchant never collects, for keys it holds uncertified, and every later
  ``register`` refused: the stranding ``registration.json`` exists to prevent;
- a wallet: the request whose state is overwritten, its answer lost then, is never
  collected nor asked about again, and its key version, certified by the CA or not, is
  kept uncertified for good (a token's slot each); a refusal heard by one takes back what
  the card file holds, which may be the other's request.

So each holds an exclusive ``flock`` on ``registration.lock`` in the directory from
before it reads its record until it has finished, with no wait: a second one is refused
at once (``RegistrationError``), nothing made, recorded or sent. The kernel drops a
``flock`` when its holder ends, killed or not: a lock file left behind blocks nothing.
A wallet's purchases and inquiries only read the card file: they take no lock.

Nothing is ever written to the lock file, but it is opened for writing when it may be
(``clients.lock_file``, as the wallet's purchase book opens its own): on NFS and CIFS an
exclusive ``flock`` is an emulated ``fcntl`` lock, which needs a descriptor open for
writing. A lock file the user may read but not write is opened read-only, where a local
``flock`` needs no more, so that it does not stop every ``register`` and ``renew`` with
"Permission denied". One made by a run as root (``sudo``) in another user's directory is
handed to the directory's owner, private to them (0600) as before: the owner's later runs
open it, other users still cannot. One no run can open (left by an earlier release under
``sudo``), or that is not a plain file, is refused with what to do, nothing made,
recorded or sent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from clients.errors import RegistrationError
from clients.lock_file import NotPlainFile, open_lock_file, why_unusable

LOCK_FILE = "registration.lock"
# Private to the directory's owner, as the files it guards are.
LOCK_FILE_MODE = 0o600

P = ParamSpec("P")
R = TypeVar("R")


class _Directory(Protocol):
    @property
    def base_dir(self) -> Path: ...


class _Registrar(Protocol):
    @property
    def _config(self) -> _Directory: ...


S = TypeVar("S", bound=_Registrar)


def _unusable(path: Path, command: str, why: str) -> RegistrationError:
    """The refusal of a lock file that cannot be used: what is wrong, and that nothing
    happened."""
    return RegistrationError(
        f"{command}: cannot use lock file {path}: {why}; this {command} made, recorded and "
        "sent nothing"
    )


def _why_not_opened(path: Path, command: str, exc: OSError) -> str:
    """Why ``path`` did not open or is refused, and the way out when it is another
    user's or no plain file."""
    why = why_unusable(exc)
    if isinstance(exc, NotPlainFile):
        return f"{why}: remove it, run {command} again"
    if exc.errno != errno.EACCES:
        return why
    try:
        owner = path.lstat().st_uid
    except OSError:
        return why  # not there: the directory is what may not be written
    if owner == os.geteuid():
        return why
    return (
        f"{why}: it belongs to uid {owner} (left by a run as another user, under sudo?); "
        f"with no register or renew running, remove it and run {command} again"
    )


def _owned_as_its_directory(fd: int, path: Path) -> None:
    """A lock file root has just made (``open_lock_file``: created by this very open) in
    another user's directory is given to that user: a run under sudo would otherwise
    leave one the owner's runs cannot open.

    Never a file that was there before: the directory's owner may have put there a hard
    link to any file of root's (``/etc/shadow``), and unlinked its own name after the
    open, so no check of the file found can tell it from one root made. One found is
    left as it is, and locked all the same."""
    if os.geteuid() != 0:
        return
    directory = os.stat(path.parent)
    if directory.st_uid != 0:
        os.fchown(fd, directory.st_uid, directory.st_gid)


@contextlib.contextmanager
def registering_alone(directory: Path, party: str, command: str) -> Iterator[None]:
    """Hold ``directory``'s registration lock through the block, for ``command``
    (``register``, ``renew``) of ``party`` (``merchant``, ``wallet``); RegistrationError
    at once if another holds it, or if the lock file cannot be opened or is no plain
    file (nothing made, recorded or sent)."""
    path = directory / LOCK_FILE
    try:
        fd, created = open_lock_file(path, LOCK_FILE_MODE)
    except OSError as exc:
        raise _unusable(path, command, _why_not_opened(path, command, exc)) from None
    try:
        try:
            if created:
                _owned_as_its_directory(fd, path)
        except OSError as exc:
            why = f"it cannot be given to its directory's owner ({exc.strerror})"
            raise _unusable(path, command, why) from None
        try:
            # No wait: a registration polls a pended request for seconds, and the one
            # given second is refused now rather than run on what the first leaves.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegistrationError(
                f"another `setpay {party} register` or `renew` is running on this {party} "
                f"({path.name} is locked): this {command} made, recorded and sent nothing;"
                " run it again once that one has ended"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def one_at_a_time(
    party: str, command: str
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Decorates a registrar's ``register`` or ``renew`` (``command``) of ``party``: run
    under ``registering_alone`` in its directory (its configuration's ``base_dir``)."""

    def decorate(run: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        def alone(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with registering_alone(self._config.base_dir, party, command):
                return run(self, *args, **kwargs)

        functools.update_wrapper(alone, run)
        return alone

    return decorate
