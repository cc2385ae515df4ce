"""Where ``setpay bench authorize --spawn`` keeps the bank it makes, and how that bank's
directory, keys and all, is removed however the bench ends.

``--workdir DIR``: the user's directory, made if missing and never removed. It must be a
directory (``check_workdir``: a file there is refused by name, not by errno) and empty:
each run makes a new bank in it (``setpay init DIR/bank``, which never overwrites one),
and an earlier run's bank, logs and port files would make this run fail after its start
or mix its logs into this one's. A run stopped half-way leaves its directory as it was,
to be looked at; the next run wants a new or emptied one (``make bench`` empties its own).

Without it, a temporary directory (``setpay-bench-*``) the bench removes on its way out,
Ctrl-C and the stop signals included (``cli.bench_stop``). SIGKILL (the OOM killer's too)
runs none of that: the servers stop by their lifelines (``clients.loadtest.spawn``), but
the directory, its bank's keys among it, stayed for good. So a reaper is started with it
(``python -m cli.bench_workdir``, a session of its own), before anything is written there:
it holds the read end of a pipe whose write end the bench holds and hands to every process
that writes in the directory (``setpay init``, the bank, the ceiling, the echo: ``holds``,
inherited by every process they fork), and nothing else. The pipe reads its end only when
the last of them is gone, however each went: then nothing writes there any more, and the
reaper removes the directory. Neither a pid nor a process group (reused once reaped, or
never reaped under an init that does not reap), nor a timer (a draining server writes on),
tells of that so surely. A bench that ends as it should has removed the directory itself,
and its reaper, finding none, just ends.

Both remove it the same way (``remove``), and only the directory the run made, held open
from its making (so its inode number cannot pass to another while the run lasts). Its
contents are removed through that descriptor, never by path, wherever it is now: a
directory renamed in under its path meanwhile loses nothing. Its entry goes last, by name
in its parent, only if that still names the emptied directory, through no link (the same
device and inode): a swap in that very instant can remove an empty directory at most. No
symbolic link is followed out of it, and no mount crossed: a directory on another mount
(another device, or a bind mount, which keeps its source's device and is told apart by
Linux's mount id) is neither entered nor removed, nor is a file mounted over, and the
directories holding it stay. Where the mount id cannot be read (no ``/proc``), a directory
on the same device cannot be told from a bind mount: it is left the same way, whatever it
holds. What a failure kept (a permission, too many open files) stays as well. The bench
says what stayed and why on its way out, the reaper (no terminal) does not.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from clients.loadtest.errors import PlanError, SpawnError

PREFIX = "setpay-bench-"
# How long a bench that ended as it should waits for its reaper to end: at once, as every
# holder of the pipe is gone by then; a reaper slower than that ends on its own.
REAPER_EXIT_SECONDS = 5.0
# Bytes read from the pipe at once: nothing is written to it, its end is awaited.
READ_BYTES = 64
# Where Linux tells an open descriptor's mount (``_mount``).
PROC = Path("/proc")
# How a directory is opened to be removed through: never through a link.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# Why ``remove`` left a directory unentered (``Left``).
ANOTHER_MOUNT = "on another mount: neither entered nor removed"
UNKNOWN_MOUNT = "on a mount not told apart without a mount id: neither entered nor removed"


@dataclass(frozen=True)
class Workdir:
    """The bench's directory, and the descriptor its writers hold (None: a --workdir)."""

    path: Path
    holds: int | None = None


@dataclass(frozen=True)
class Left:
    """What ``remove`` left of the directory, and why (the directories holding it stay too,
    unsaid)."""

    path: Path
    why: str

    def __str__(self) -> str:
        return f"{self.path} ({self.why})"


def check_workdir(path: Path) -> None:
    """Refuse (PlanError) a --workdir that is not a directory or not empty, by its path."""
    if path.is_dir():
        with os.scandir(path) as entries:
            if next(entries, None) is not None:
                raise PlanError(
                    f"--workdir: {path} is not empty: each run makes a new bank in a new or "
                    "empty directory, where an earlier run's bank and files would not mix "
                    "with its own"
                )
    elif path.exists() or path.is_symlink():
        raise PlanError(f"--workdir: {path} exists and is not a directory")


@contextmanager
def workdir(given: Path | None) -> Iterator[Workdir]:
    """``given`` (made if missing, kept), else a temporary directory removed afterwards,
    by the bench or, if it is killed, by its reaper (the module docstring)."""
    if given is not None:
        try:
            given.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SpawnError(f"--workdir: cannot make {given} ({why})") from exc
        yield Workdir(given.resolve())
        return
    with temporary(PREFIX, _say_left) as made:
        yield made


@contextmanager
def temporary(prefix: str, said: Callable[[Path, list[Left]], None]) -> Iterator[Workdir]:
    """A new temporary directory (``prefix``), removed on the way out (``remove``), or, if
    the process is killed, by its reaper once every holder of ``holds`` is gone (the
    module docstring); ``said``, once the reaper has ended, the directory and what it
    left (``remove``). ``setpay demo`` makes its own so: it holds ``holds`` itself, and starts
    no process that writes there."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        held = os.open(directory, _DIRECTORY)
    except BaseException:
        with suppress(OSError):
            directory.rmdir()  # just made, and empty
        raise
    left: list[Left] | None = None
    try:
        try:
            with _reaper(directory, held) as holds:
                try:
                    yield Workdir(directory, holds)
                finally:
                    # Before its reaper's pipe ends: it finds nothing.
                    left = remove(directory, held)
        finally:
            if left is None:  # the reaper could not be started
                left = remove(directory, held)
            # Only what is still there once its reaper has ended, which removed after it
            # what a file written late or a descriptor this process lacked kept.
            said(directory, [stayed for stayed in left if os.path.lexists(stayed.path)])
    finally:
        os.close(held)


def _say_left(directory: Path, left: list[Left]) -> None:
    """Say on stderr what ``remove`` left of the bench's directory, and why."""
    if left:
        print(f"setpay bench: {directory} left: {'; '.join(map(str, left))}", file=sys.stderr)


@contextmanager
def _reaper(directory: Path, held: int) -> Iterator[int]:
    """Start the reaper of ``directory`` (``held``, an open descriptor of it); the write
    end its writers are to hold, closed (and the reaper awaited, briefly) on the way out."""
    read, write = os.pipe()  # neither inherited but as ``pass_fds`` says
    try:
        reaper = subprocess.Popen(
            [sys.executable, "-m", "cli.bench_workdir", str(read), str(held), str(directory)],
            pass_fds=(read, held), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    try:
        yield write
    finally:
        os.close(write)
        with suppress(subprocess.TimeoutExpired):
            reaper.wait(REAPER_EXIT_SECONDS)


def reap(fd: int, directory: Path, held: int) -> None:
    """Wait for the end of the pipe ``fd``, then ``remove`` the directory ``held`` (an open
    descriptor of it), and its entry ``directory`` if that still names it."""
    while os.read(fd, READ_BYTES):
        pass  # nothing is meant to be written: dropped
    remove(directory, held)  # what stayed is left unsaid: no terminal to say it on


def remove(directory: Path, held: int) -> list[Left]:
    """Empty the directory ``held`` is, wherever it is now; then remove its entry
    ``directory`` if that still names it (the module docstring). What stays, and why: an
    entry on another mount, or on one not to be told apart, or one whose removal failed
    (a permission, too many open files); the directories holding them stay, unsaid. An
    entry gone meanwhile is not one."""
    left: list[Left] = []
    try:
        # A descriptor of its own to read through: ``held`` is one open file with the
        # reaper's (``pass_fds``), so one read position, and a bench killed while it read
        # left that past every entry: the reaper found nothing to remove, the keys stayed.
        own = os.open(".", _DIRECTORY, dir_fd=held)
    except OSError as exc:
        return [_failed(directory, exc)]
    try:
        _empty(own, directory, left)  # removed already: nothing in it
    finally:
        os.close(own)
    if left:
        return left
    try:
        # A path descriptor: it names and stats the entry and removes it, in a parent
        # its user may enter but not list (a TMPDIR of mode 0300) too.
        parent = os.open(directory.parent, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        return left  # its parent gone: so is it
    except OSError as exc:
        return [_failed(directory, exc)]
    try:
        _rmdir(parent, directory.name, held, directory, left)
    finally:
        os.close(parent)
    return left


@dataclass
class _Level:
    """A directory being emptied: its descriptor, where it is, the entries still to remove
    (each a name, and whether a directory), and how much was left before it was entered."""

    fd: int
    at: Path
    entries: list[tuple[str, bool]]
    before: int


def _empty(top: int, at: Path, left: list[Left]) -> None:
    """Remove what the directory ``top`` (at ``at``) holds, on its mount only, adding what
    stays to ``left``. Walked with a stack of its own, not by recursion: two frames a level
    overflowed Python's at some 490 levels, and RecursionError left the directory, out of
    the bench's way out and the reaper alike."""
    try:
        mount = _mount(top)
    except OSError as exc:
        left.append(_failed(at, exc))
        return
    levels = [_Level(top, at, _listed(top, at, left), len(left))]
    try:
        while levels:
            level = levels[-1]
            if level.entries:
                name, is_dir = level.entries.pop()
                child = _entered(level, name, is_dir, mount, left)
                if child is not None:
                    levels.append(child)
                continue
            levels.pop()
            if levels:
                try:
                    if len(left) == level.before:  # else it stays for what it holds
                        _rmdir(levels[-1].fd, level.at.name, level.fd, level.at, left)
                finally:
                    os.close(level.fd)
    finally:
        for level in levels[1:]:
            os.close(level.fd)


def _listed(fd: int, at: Path, left: list[Left]) -> list[tuple[str, bool]]:
    """The entries of the directory ``fd`` (at ``at``), last first; none if unreadable
    (said in ``left``)."""
    try:
        with os.scandir(fd) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError as exc:
        left.append(_failed(at, exc))
        return []
    found.reverse()
    return found


def _entered(
    level: _Level, name: str, is_dir: bool, mount: tuple[int, int | None], left: list[Left]
) -> _Level | None:
    """The directory ``name`` in ``level``, opened to be emptied, if on ``mount``, else
    said in ``left``; anything else there unlinked (None)."""
    at = level.at / name
    if is_dir:
        try:
            child = os.open(name, _DIRECTORY, dir_fd=level.fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):  # else a link now, say
                _failed_unless_gone(at, exc, left)
                return None
        else:
            try:
                why = _apart(mount, child)
                if why is None:
                    before = len(left)
                    return _Level(child, at, _listed(child, at, left), before)
                left.append(Left(at, why))
            except BaseException:
                os.close(child)
                raise
            os.close(child)
            return None
    try:
        os.unlink(name, dir_fd=level.fd)
    except OSError as exc:
        if exc.errno == errno.EBUSY:  # a file mounted over: Linux unlinks no mount point
            left.append(Left(at, ANOTHER_MOUNT))
        else:
            _failed_unless_gone(at, exc, left)
    return None


def _apart(mount: tuple[int, int | None], fd: int) -> str | None:
    """Why the directory ``fd`` is not to be entered from ``mount``: another device is
    surely another mount; on the same one, a bind mount is told only by its mount id, and
    without one it may be (its source emptied). None if on ``mount``."""
    try:
        its = _mount(fd)
    except OSError as exc:
        return _why(exc)
    if its[0] != mount[0]:
        return ANOTHER_MOUNT
    if its[1] is None or mount[1] is None:
        return UNKNOWN_MOUNT
    return None if its[1] == mount[1] else ANOTHER_MOUNT


def _rmdir(parent: int, name: str, fd: int, at: Path, left: list[Left]) -> None:
    """Remove the emptied directory ``fd`` (at ``at``) by its ``name`` in ``parent``, if
    that still names it (else moved away meanwhile: emptied, its new entry not ours)."""
    if _names(parent, name, fd):
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as exc:
            _failed_unless_gone(at, exc, left)  # not empty: written in meanwhile, say


def _names(parent: int, name: str, held: int) -> bool:
    """Whether ``name`` in ``parent`` is the directory ``held`` is, through no link."""
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and os.path.samestat(found, os.fstat(held))


def _failed(at: Path, exc: OSError) -> Left:
    """``at``, left for ``exc``."""
    return Left(at, _why(exc))


def _why(exc: OSError) -> str:
    """Why ``exc`` left an entry: its reason, not its path (``Left`` has that)."""
    return f"not removed: {exc.strerror or type(exc).__name__}"


def _failed_unless_gone(at: Path, exc: OSError, left: list[Left]) -> None:
    """Add ``at`` to ``left`` for ``exc``, unless that says it is gone already."""
    if exc.errno != errno.ENOENT:
        left.append(_failed(at, exc))


def _mount(fd: int) -> tuple[int, int | None]:
    """The device and the mount of the open ``fd``: a bind mount keeps its source's device,
    so Linux's mount id (``/proc``) tells it apart; None where the system does not say
    (then ``_apart`` cannot tell a bind mount). OSError if it could not be asked (too many
    open files, say): that is no answer."""
    device = os.fstat(fd).st_dev
    with suppress(FileNotFoundError, ValueError):
        for line in (PROC / "self" / "fdinfo" / str(fd)).read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "mnt_id":
                return device, int(value)
    return device, None


def main(argv: list[str]) -> int:
    """``python -m cli.bench_workdir FD HELD DIRECTORY``: the reaper (the module docstring)."""
    fd, held, directory = argv
    reap(int(fd), Path(directory), int(held))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
