"""The latch on a refused PIN, and the refusal records the processes of a host share.

A real HSM locks the user PIN after a few wrong tries, so a refused PIN must not be
offered again on every call after a reconnect. ``PinLatch`` remembers a refusal with an
identity of the PIN source as it was read (a file's device, inode, modification time
and size; an environment variable's value under a keyed hash made for this latch and
kept only in memory) and refuses further logins, with the same error and without
calling C_Login, until that identity changes. A PIN that cannot be the one meant (a
leading byte-order mark or a line break in it: ``hsm.token_login.pin_problem``) is
refused before any C_Login, every time it is read, and nothing is latched or shared.

A PIN file's refusal is also written beside the token's login lock file (its name:
``hsm.token_login``'s "Lock names"), so the other processes on this host that use that
token and that file (a gateway's workers all start together; a restarted one) do not
each offer the refused PIN once more: they read it under the login lock and refuse as
well, until the file changes. The record holds the file's name and identity and the
message, nothing of the PIN; the next accepted login removes it.

An environment PIN's identity is a keyed hash whose key must not be written down: its
refusal is recorded only by a process of a bank start (``hsm.pinsource.join_bank_start``)
and is honoured only by the processes of that start, which all inherited that value; the
bank's next start offers the PIN again, once. One record per token and variable holds an
entry for each bank start whose PIN was refused (its random name, its supervisor's pid
and the message, nothing of the value): two banks sharing a token, a lock directory and
the variable's name (each with its own value) neither remove nor replace each other's
entries. A login accepted removes its own start's entry only, and every write drops the
entries of starts whose supervisor is gone (``supervisor_alive``): what is left is one
file per token and variable, naming live starts, or none. A start whose supervisor's pid
was reused keeps its entry until a write finds that process gone too: a stale entry,
never a PIN offered more often. The oldest entries give way should the record outgrow
MAX_REFUSAL_RECORD_BYTES (their starts' next worker offers the PIN once more).

What a record means: the PIN, from a source unchanged since, was refused by a view of the
token taken inside that login (the module initialized after the login lock was taken). A
module keeps a token's PIN state from its initialization (SoftHSM re-reads it only
then), so an older view may refuse a PIN the token now takes (its PIN was changed, or
reset to the file's, after the view was taken). Such a refusal is latched in its own
backend only (``latch(..., share=False)``) and the module is marked stale, so that the
process's next login restarts it first; other processes are never kept from the PIN.
To spare that refusal, ``hsm.token_connect`` also restarts the module before it offers
a file changed since the view (``hsm.token_login.view_may_be_stale``): file times only
decide whether that restart is worth its cost, never what is shared.

Records are read, written and removed with the token's login lock held, and a record is
never written in place: it is written whole, and synced, to a new file beside it that is
then renamed over it. A writer that fails or dies part way (a full disk, a kill) leaves
the record as it was, never one torn or emptied (which read as none: every start's entry
lost, each refused PIN offered once more); at worst a temporary file of its own stays
beside it, which nothing reads. Whatever else is at the record's path (a link, a FIFO
whose open for writing would wait with the login lock held) is replaced, never opened,
and a directory there is left as it is (nothing shared). Errors raised:
``PermanentBackendError`` (a latched refusal).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Hashable

from hsm.errors import PermanentBackendError
from hsm.pinsource import PinSource, bank_start, bank_supervisor

#: A shared refusal record is a file name, five numbers and a message (a PIN file's), or
#: a few bank starts' names, pids and messages (an environment PIN's): 4 KiB is ample,
#: and reading no more keeps a stray large file from costing anything.
MAX_REFUSAL_RECORD_BYTES = 4096

#: Larger than any pid a kernel gives (Linux: 2**22 at most): anything else in a record
#: names no process, and is never handed to ``os.kill`` (0 or less would name a group).
_PID_LIMIT = 2**31


class PinLatch:
    """Remembers a refused PIN until its source changes (see the module docstring)."""

    def __init__(self, source: PinSource) -> None:
        """Refusals are shared once ``share_at`` names the token's lock files."""
        self._source = source
        # Keys the hash of an environment PIN: equal values are recognized, but the
        # hash alone, should it ever be seen, cannot be checked against guesses.
        self._key = secrets.token_bytes(32)
        self._refused: tuple[Hashable, str] | None = None
        self._shared_path: str | None = None

    def share_at(self, shared_stem: str | None) -> None:
        """Share this PIN source's refusals (an environment PIN's: in a bank start) beside
        the lock files named ``shared_stem`` from now on (None: share none)."""
        # Where refusals of this PIN source on this token are shared (see above): one
        # record per source, so a PIN accepted from another clears none of them.
        self._shared_path = None
        file = self._source.kind == "file"
        if shared_stem is not None and (file or bank_start() is not None):
            place = hashlib.sha256(os.fsencode(self._source.location)).hexdigest()[:16]
            self._shared_path = f"{shared_stem}.{'pin' if file else 'env'}-{place}.refused"

    def identity(self) -> Hashable:
        """What the PIN source is now: compared, never shown."""
        if self._source.kind == "env":
            value = os.environ.get(self._source.location)
            if value is None:
                return ("env", None)
            # surrogatepass: a value that is not UTF-8 still has an identity (read()
            # refuses it), and no UnicodeEncodeError carries the PIN away.
            raw = value.encode("utf-8", "surrogatepass")
            return ("env", hmac.new(self._key, raw, hashlib.sha256).digest())
        try:
            found = os.stat(self._source.location)
        except OSError as exc:
            return ("file", exc.errno)
        return ("file", found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)

    @property
    def location(self) -> str:
        """Where the PIN comes from (a file's path, a variable's name), as configured."""
        return self._source.location

    def changed_ns(self) -> int | None:
        """When a PIN file last changed (the later of its modification and inode change
        times: a rename or a copy keeping an old mtime is a change too); None for a
        source that is not a file, or a file that cannot be found."""
        if self._source.kind != "file":
            return None
        try:
            found = os.stat(self._source.location)
        except OSError:
            return None
        return max(found.st_mtime_ns, found.st_ctime_ns)

    def check(self) -> None:
        """Raise the latched refusal again if the PIN source has not changed since."""
        if self._refused is None:
            return
        identity, message = self._refused
        if self.identity() == identity:
            raise PermanentBackendError(message)
        self._refused = None

    def check_shared(self) -> None:
        """Raise a refusal another process recorded for this PIN source, if it still holds
        (a PIN file unchanged; an environment PIN in this bank start).

        Call with the login lock held: refusals are recorded under it.
        """
        record = self._read()
        if record is None:
            return
        identity = self.identity()
        if self._source.kind == "env":
            message = _starts(record).get(bank_start() or "", {}).get("message")
        elif record.get("identity") == _as_json(identity):
            message = record.get("message")
        else:
            message = None
        if isinstance(message, str):
            self._refused = (identity, message)
            raise PermanentBackendError(message)

    def latch(self, identity: Hashable, message: str, *, share: bool) -> None:
        """Remember that the PIN read from the source as ``identity`` was refused;
        ``share``: record it for other processes too (a view taken inside this login
        refused it, see the module docstring). Call with the login lock held."""
        self._refused = (identity, message)
        if self._shared_path is None or not share:
            return
        # Best effort: without the record this process still refuses the PIN itself.
        if self._source.kind == "file":
            self._write({"identity": _as_json(identity), "message": message})
            return
        start = bank_start() or ""
        starts = self._live_starts(leaving=start)
        starts[start] = {"supervisor": bank_supervisor(), "message": message}
        self._write_starts(starts)

    def accepted(self) -> None:
        """The token took the PIN: remove the refusal recorded for other processes (an
        environment PIN's: this bank start's entry, and those of starts gone). Call with
        the login lock held."""
        if self._shared_path is None:
            return
        if self._source.kind == "file":
            with contextlib.suppress(OSError):
                os.unlink(self._shared_path)
            return
        self._write_starts(self._live_starts(leaving=bank_start() or ""))

    def _read(self) -> dict[str, object] | None:
        """This source's shared record, if there is one that reads (None: nothing known)."""
        if self._shared_path is None:
            return None
        try:
            # Not a link, never waiting (a FIFO put there would hold the login lock), and
            # only a regular file read; JSON nested past the parser's depth reads as none.
            fd = os.open(self._shared_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with open(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                record = json.loads(handle.read(MAX_REFUSAL_RECORD_BYTES))
        except (OSError, ValueError, RecursionError):
            return None  # none, or unreadable: nothing is known against this PIN
        if isinstance(record, dict) and record.get("source") == self._source.describe():
            return record
        return None

    def _live_starts(self, *, leaving: str) -> dict[str, dict[str, object]]:
        """The entries of the environment PIN's record but ``leaving``'s, their starts'
        supervisors still running, oldest first."""
        record = self._read()
        starts = _starts(record) if record is not None else {}
        return {
            name: entry
            for name, entry in starts.items()
            if name != leaving and supervisor_alive(entry.get("supervisor"))
        }

    def _write_starts(self, starts: dict[str, dict[str, object]]) -> None:
        """Write the environment PIN's record with ``starts`` (the newest last), the oldest
        dropped if it would not fit; none left: no record."""
        entries = list(starts.items())
        while entries:
            record = {"source": self._source.describe(), "starts": dict(entries)}
            if len(json.dumps(record).encode()) <= MAX_REFUSAL_RECORD_BYTES:
                self._write({"starts": dict(entries)})
                return
            entries.pop(0)
        if self._shared_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._shared_path)

    def _write(self, fields: dict[str, object]) -> None:
        """Replace the record with one holding ``fields`` (best effort: nothing raised for
        a failure; the record is then as it was, see the module docstring)."""
        if self._shared_path is None:
            return
        data = json.dumps({"source": self._source.describe(), **fields}).encode()
        # A name no other writer draws, in the same directory (a rename stays on one file
        # system); made, never reused (O_EXCL), and never through a link.
        temporary = f"{self._shared_path}.{secrets.token_hex(8)}.tmp"
        with contextlib.suppress(OSError):
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600,
            )
            try:
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, self._shared_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise


def supervisor_alive(pid: object) -> bool:
    """Whether ``pid`` (as a record holds it) names a running process: a bank start's
    supervisor. Anything but a pid names none; another user's process is running."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 1 <= pid < _PID_LIMIT:
        return False
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (``os.write`` may write less, a disk nearly full)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "nothing written")
        view = view[written:]


def _starts(record: dict[str, object]) -> dict[str, dict[str, object]]:
    """An environment PIN record's entries, by bank start (those that read as entries)."""
    starts = record.get("starts")
    if not isinstance(starts, dict):
        return {}
    return {
        name: entry
        for name, entry in starts.items()
        if isinstance(name, str) and name and isinstance(entry, dict)
    }


def _as_json(identity: Hashable) -> object:
    """A file identity as it reads back from JSON (tuples come back as lists)."""
    return list(identity) if isinstance(identity, tuple) else identity
