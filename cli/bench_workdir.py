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
(another device, or a bind mount, which keeps its source's device) is neither entered nor
removed, nor is a file mounted over, and the directories holding it stay; the bench says
so on its way out, the reaper (no terminal) does not.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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


@dataclass(frozen=True)
class Workdir:
    """The bench's directory, and the descriptor its writers hold (None: a --workdir)."""

    path: Path
    holds: int | None = None


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
    directory = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        held = os.open(directory, _DIRECTORY)
    except BaseException:
        with suppress(OSError):
            directory.rmdir()  # just made, and empty
        raise
    removed = False
    try:
        try:
            with _reaper(directory, held) as holds:
                try:
                    yield Workdir(directory, holds)
                finally:
                    removed = True  # before its reaper's pipe ends: it finds nothing
                    _remove_saying(directory, held)
        finally:
            if not removed:  # the reaper could not be started
                _remove_saying(directory, held)
    finally:
        os.close(held)


def _remove_saying(directory: Path, held: int) -> None:
    """``remove`` it, saying on stderr what was left (a mount in it)."""
    left = remove(directory, held)
    if left:
        print(
            f"setpay bench: {directory} left: {', '.join(map(str, left))} on another mount"
            " (neither entered nor removed)",
            file=sys.stderr,
        )


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
    remove(directory, held)  # what a mount kept is left unsaid: no terminal to say it on


def remove(directory: Path, held: int) -> list[Path]:
    """Empty the directory ``held`` is, through it, wherever it is now; then remove its
    entry ``directory`` if that still names it (the module docstring). The entries left
    for being on another mount (with them, the directories holding them). Whatever else
    fails (an entry gone meanwhile, a permission) is passed over, as ``shutil.rmtree``
    did."""
    left: list[Path] = []
    _empty(held, _mount(held), directory, left)  # removed already: nothing in it
    if left:
        return left
    try:
        parent = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return left  # its parent gone: so is it
    try:
        if _names(parent, directory.name, held):
            with suppress(OSError):
                os.rmdir(directory.name, dir_fd=parent)
    finally:
        os.close(parent)
    return left


def _names(parent: int, name: str, held: int) -> bool:
    """Whether ``name`` in ``parent`` is the directory ``held`` is, through no link."""
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and os.path.samestat(found, os.fstat(held))


def _empty(fd: int, mount: tuple[int, int | None], at: Path, left: list[Path]) -> None:
    """Remove what the directory ``fd`` (at ``at``) holds, on its ``mount`` only, adding
    what another mount kept to ``left``."""
    try:
        with os.scandir(fd) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        return  # unreadable: left, and the directories holding it with it
    for name, is_dir in found:
        if not (is_dir and _emptied(fd, name, mount, at / name, left)):
            try:
                os.unlink(name, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    left.append(at / name)  # a file mounted over: Linux unlinks no mount point


def _emptied(fd: int, name: str, mount: tuple[int, int | None], at: Path, left: list[Path]) -> bool:
    """Empty and remove the directory ``name`` in ``fd`` (at ``at``), unless it is on
    another mount (then ``left``); False if it is not one to open (gone, or no longer a
    directory: a link now, say)."""
    try:
        child = os.open(name, _DIRECTORY, dir_fd=fd)
    except OSError:
        return False
    try:
        if _mount(child) != mount:
            left.append(at)
            return True
        _empty(child, mount, at, left)
        if _names(fd, name, child):
            with suppress(OSError):
                os.rmdir(name, dir_fd=fd)  # fails (not empty) if something was left in it
    finally:
        os.close(child)
    return True


def _mount(fd: int) -> tuple[int, int | None]:
    """The device and the mount of the open ``fd``: a bind mount keeps its source's device,
    so Linux's mount id (``/proc``) tells it apart; None where the system does not say."""
    device = os.fstat(fd).st_dev
    with suppress(OSError, ValueError):
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
