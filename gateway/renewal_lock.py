"""The lock on a bank's gateway keys: one renewal or pruning at a time, no start during one.

``setpay ca renew-gateway`` and ``setpay ca prune-gateway`` change the gateway's key
versions and the files in ``certs/`` in several steps. Two of them at once on one bank
(two operators, or a retry while the first still runs) would each pick "the next key
version", or delete what the other is installing, and leave keys and certificate files
of both mixed. So each holds an exclusive ``flock`` on ``gateway-keys.lock`` in the
bank's directory (beside ``setpay.toml`` and ``ca.db``) from before it looks at the bank
until it has finished (``hsm.filelock.exclusive_lock``, with no wait): the second one
is refused at once (``KeysLocked``) and changes nothing.

Whatever loads the bank's keys (``gateway.bank_pki.load_bank_pki``: a bank process at
start, ``setpay ca revoke`` and ``issue-tls``) checks the lock first, with a shared lock
taken and dropped at once, so that any number of workers starting together never stand
in each other's way: it is refused while a renewal runs, as it would load half of one.
For a bank on its configured ports, which of a renewal and a start wins is always
decided: the renewal takes the lock before it checks the bank's ports, and the bank
holds its ports before its workers check the lock.

The kernel drops a ``flock`` when its holder ends, killed or not: a lock file left
behind blocks nothing. The holder writes its PID and task into the file, only so that
the refusal can name them; the file is emptied when the holder finishes.

Errors: ``KeysLocked`` (another holds the lock), and ``ProvisioningError`` when the lock
file cannot be created or read (``gateway.bank_errors``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.bank_errors import ProvisioningError
from gateway.config import BankConfig
from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.filelock import exclusive_lock

KEYS_LOCK_FILE = "gateway-keys.lock"
# The holder's note is its PID and a task name: a few dozen bytes. Read at most this
# much of it, whatever else was written into the file.
HOLDER_NOTE_BYTES = 128
RENEW_TASK = "renew-gateway"
# Readable by all, writable by its owner: see ``_create_readable``.
LOCK_FILE_MODE = 0o644
PRUNE_TASK = "prune-gateway"


class KeysLocked(ProvisioningError):
    """A renewal or pruning of the gateway's keys holds the bank's lock."""


@dataclass(frozen=True)
class KeysLock:
    """The lock, held by this process for ``task``: given to ``load_bank_pki`` so that it
    does not refuse the bank as locked by its own caller."""

    path: Path
    task: str


def lock_path(config: BankConfig) -> Path:
    """The bank's lock file."""
    return config.base_dir / KEYS_LOCK_FILE


@contextlib.contextmanager
def holding_keys_lock(config: BankConfig, task: str) -> Iterator[KeysLock]:
    """Hold the bank's lock for ``task`` through the block; ``KeysLocked`` at once if
    another holds it."""
    path = lock_path(config)
    _create_readable(path)
    with contextlib.ExitStack() as held:
        try:
            # No wait: a renewal takes seconds to minutes on a token, and an operator
            # who started a second one wants to hear now that the first still runs.
            held.enter_context(exclusive_lock(str(path), 0.0))
        except TransientBackendError as exc:
            raise KeysLocked(
                f"{_holder(path)} holds the lock on the bank's gateway keys ({path}):"
                f" this {task} changed nothing; run it again once that one has finished"
            ) from exc
        except PermanentBackendError as exc:
            raise ProvisioningError(str(exc)) from exc
        _write_note(path, f"{os.getpid()} {task}\n")
        try:
            yield KeysLock(path, task)
        finally:
            _write_note(path, "")


def check_unlocked(config: BankConfig) -> None:
    """Refuse (``KeysLocked``) while a renewal or pruning holds the bank's lock."""
    path = lock_path(config)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return  # no renewal or pruning ever ran here
    except OSError as exc:
        raise ProvisioningError(
            f"cannot check the lock on the bank's gateway keys ({path}):"
            f" {exc.strerror or type(exc).__name__}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise KeysLocked(
                f"{_holder(path)} holds the lock on the bank's gateway keys ({path}):"
                " nothing that loads them starts until it has finished"
            ) from exc
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _create_readable(path: Path) -> None:
    """Create the lock file readable by all (it holds a PID and a task name, no secret):
    ``check_unlocked`` runs as the bank's user, and a file only a renewal's user (an
    operator with sudo) could read would stop the bank from starting."""
    try:
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            LOCK_FILE_MODE,
        )
    except FileExistsError:
        return
    except OSError as exc:
        raise ProvisioningError(
            f"cannot create the lock on the bank's gateway keys ({path}):"
            f" {exc.strerror or type(exc).__name__}"
        ) from exc
    try:
        os.fchmod(fd, LOCK_FILE_MODE)  # whatever the umask
    finally:
        os.close(fd)


def _write_note(path: Path, note: str) -> None:
    # Only to name the holder in a refusal: a note that cannot be written (a full disk)
    # costs that name, never the lock, which is held already.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, note.encode("ascii"))
        finally:
            os.close(fd)


def _holder(path: Path) -> str:
    """Who holds the lock, as its note says: ``setpay ca renew-gateway (pid 1234)``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            note = os.read(fd, HOLDER_NOTE_BYTES).decode("ascii", "replace").split()
        finally:
            os.close(fd)
    except OSError:
        note = []
    # A holder that has not written its note yet (it writes it right after locking).
    if len(note) != 2 or not note[0].isdigit() or note[1] not in (RENEW_TASK, PRUNE_TASK):
        return "another renewal or pruning (pid unknown)"
    return f"another setpay ca {note[1]} (pid {note[0]})"
