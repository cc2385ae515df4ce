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
tells of that so surely. The reaper removes only the directory it was started for: it
holds that directory open (so its inode number cannot pass to another while it waits), the
path must still name it, no link (the same device and inode), and ``shutil.rmtree``
removes it through descriptors, following no symbolic link out of it. A bench that ends as
it should has removed the directory itself, and its reaper, finding none, just ends.
"""

from __future__ import annotations

import os
import shutil
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
        with _reaper(directory) as holds:
            try:
                yield Workdir(directory, holds)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        # Removed already, unless the reaper could not be started.
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _reaper(directory: Path) -> Iterator[int]:
    """Start the reaper of ``directory``; the write end its writers are to hold, closed
    (and the reaper awaited, briefly) on the way out."""
    held = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        read, write = os.pipe()  # neither inherited but as ``pass_fds`` says
    except BaseException:
        os.close(held)
        raise
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
        os.close(held)
    try:
        yield write
    finally:
        os.close(write)
        with suppress(subprocess.TimeoutExpired):
            reaper.wait(REAPER_EXIT_SECONDS)


def reap(fd: int, directory: Path, held: int) -> None:
    """Wait for the end of the pipe ``fd``, then remove ``directory`` if it still names the
    directory ``held`` (an open descriptor of it) is, through no link."""
    while os.read(fd, READ_BYTES):
        pass  # nothing is meant to be written: dropped
    try:
        found = os.lstat(directory)
    except FileNotFoundError:
        return  # the bench removed it
    if stat.S_ISDIR(found.st_mode) and os.path.samestat(found, os.fstat(held)):
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``python -m cli.bench_workdir FD HELD DIRECTORY``: the reaper (the module docstring)."""
    fd, held, directory = argv
    reap(int(fd), Path(directory), int(held))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
