"""What ``cli.bench_workdir.remove`` left of the bench's temporary directory, and when.

- A bench SIGKILLed while its own removal read the directory: its reaper got the held
  descriptor through ``pass_fds``, one open file with the bench's, so one read position,
  left past every entry; it found nothing to remove, and the keys stayed for good.
- Where Linux's mount id cannot be read (no ``/proc``), only devices were compared: a bind
  mount inside (its source's device) was entered and its source emptied.
- A tree some hundreds of levels deep overflowed the recursion (RecursionError out of the
  bench's way out, and of the reaper), and the directory stayed; a failure other than a
  mount (too many open files, a file written late) left entries without a word.

The mount test mounts, so it runs as root (``make test``), as the removal tests do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli import bench_workdir
from cli.bench_workdir import PREFIX, reap, remove, workdir

from .test_bench_workdir import REMOVED_SECONDS, _gone_within
from .test_bench_workdir_removal import _bank, _kept, _mount_in, _mounted

# The bench, killed as its removal has read the first entries of its directory and not
# yet closed that scan: its directory's path on stdout first.
KILLED_MID_SCAN = """
import os, signal
from cli.bench_workdir import workdir
real = os.scandir
def scandir(target):
    scan = real(target)
    if isinstance(target, int):
        next(scan, None)
        os.kill(os.getpid(), signal.SIGKILL)
    return scan
with workdir(None) as place:
    (place.path / "bank").mkdir()
    (place.path / "bank" / "keys").write_text("bench key")
    (place.path / "bench.log").write_text("log")
    print(place.path, flush=True)
    os.scandir = scandir
"""
# ``remove`` of the directory argv[1] with argv[2] descriptors to spare: what stayed.
FEW_DESCRIPTORS = """
import os, resource, sys
from pathlib import Path
from cli.bench_workdir import remove
run = Path(sys.argv[1])
held = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
free = os.open(os.devnull, os.O_RDONLY)
os.close(free)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (free + int(sys.argv[2]), hard))
for stayed in remove(run, held):
    print(stayed)
"""
# Deeper than two frames a level let Python's recursion go (its limit: 1000 frames).
DEPTH = 700
# How many levels deep a tree goes where descriptors run short (``SPARE`` to spare).
DEEP_FOR_DESCRIPTORS = 40
SPARE = 10
LATE = "late.log"


def _run(tmp_path: Path) -> tuple[Path, Path]:
    """A run's directory, a bank's keys and a log in it: the directory, the keys."""
    run = tmp_path / f"{PREFIX}run"
    run.mkdir()
    keys = _bank(run)
    (run / "bench.log").write_text("log")
    return run, keys


def _removed(run: Path) -> list[str]:
    """``remove`` ``run``: what stayed, as said."""
    held = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return list(map(str, remove(run, held)))
    finally:
        os.close(held)


def _deep(directory: Path, depth: int) -> None:
    """Directories ``depth`` levels deep in ``directory``, a key at the bottom."""
    at = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=at)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=at)
        os.close(at)
        at = deeper
    os.close(os.open("keys", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=at))
    os.close(at)


def test_a_bench_killed_as_its_removal_read_leaves_its_reaper_all_to_remove(
    tmp_path: Path,
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    bench = subprocess.run(
        [sys.executable, "-c", KILLED_MID_SCAN], env={**os.environ, "TMPDIR": str(temporary)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bench.returncode == -signal.SIGKILL, bench.stderr
    made = Path(bench.stdout.strip())
    assert made.parent == temporary
    # Before: its reaper read on from where the bench was, past every entry, and the bank's
    # keys stayed for good.
    assert _gone_within(made, REMOVED_SECONDS), sorted(made.rglob("*"))


def test_the_reaper_reads_from_the_start_whatever_the_bench_read(tmp_path: Path) -> None:
    run, keys = _run(tmp_path)
    held = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    read, write = os.pipe()
    os.close(write)
    scan = os.scandir(held)  # the bench's, killed mid-read: one open file with the reaper's
    try:
        next(scan)
        reap(read, run, held)
    finally:
        scan.close()
        os.close(read)
        os.close(held)
    assert not keys.exists() and not run.exists()


def test_without_a_mount_id_no_directory_on_its_device_is_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_workdir, "PROC", tmp_path / "no-proc")  # a sandbox's, say
    run, keys = _run(tmp_path)
    source, target, shown = _mount_in("bind", tmp_path, run)
    other = run / "other"
    other.mkdir()
    with _mounted("bind", source, target), _mounted("tmpfs", other, other):
        left = _removed(run)
        # Before: the bind mount was entered (only devices compared), its source emptied.
        assert shown.read_text() == "kept"
        assert (other / "precious").read_text() == "kept"
    _kept("bind", source)
    assert keys.exists()  # in a directory not told from a bind mount: left, and said
    assert sorted(path.name for path in run.iterdir()) == ["bank", "other"]
    assert sorted(left) == [
        f"{run / 'bank'} (on a mount not told apart without a mount id: neither entered nor"
        " removed)",
        f"{other} (on another mount: neither entered nor removed)",
    ]


def test_a_tree_hundreds_of_levels_deep_is_removed_on_the_benchs_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    # Before: RecursionError out of the way out, the run's own outcome replaced, the
    # directory left.
    with workdir(None) as place:
        _bank(place.path)
        _deep(place.path, DEPTH)
    assert not place.path.exists()
    assert capsys.readouterr().err == ""


def test_a_tree_hundreds_of_levels_deep_is_removed_by_the_reaper(tmp_path: Path) -> None:
    run, keys = _run(tmp_path)
    _deep(run, DEPTH)
    held = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    read, write = os.pipe()
    os.close(write)
    try:
        reap(read, run, held)  # before: RecursionError, and the directory stayed
    finally:
        os.close(read)
        os.close(held)
    assert not keys.exists() and not run.exists()


def test_descriptors_running_short_are_said(tmp_path: Path) -> None:
    run, keys = _run(tmp_path)
    _deep(run / "bank", DEEP_FOR_DESCRIPTORS)
    removal = subprocess.run(
        [sys.executable, "-c", FEW_DESCRIPTORS, str(run), str(SPARE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert removal.returncode == 0, removal.stderr
    # Before: nothing said, and what they kept stayed all the same.
    (said,) = removal.stdout.splitlines()
    stayed, _, why = said.partition(" (")
    assert why == "not removed: Too many open files)"
    assert Path(stayed).is_relative_to(run / "bank" / "d") and Path(stayed).exists()
    assert not keys.exists() and not (run / "bench.log").exists()


def _written_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written in the bank's directory just as its keys are removed."""
    real = os.unlink

    def unlink_as_written(name: str, *, dir_fd: int | None = None) -> None:
        real(name, dir_fd=dir_fd)
        if name == "keys":
            os.close(os.open(LATE, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=dir_fd))

    monkeypatch.setattr(os, "unlink", unlink_as_written)


def test_a_directory_written_in_as_it_is_removed_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _keys = _run(tmp_path)
    _written_late(monkeypatch)
    # Before: nothing said.
    assert _removed(run) == [f"{run / 'bank'} (not removed: Directory not empty)"]
    assert [path.name for path in run.iterdir()] == ["bank"]
    assert [path.name for path in (run / "bank").iterdir()] == [LATE]


def test_what_the_reaper_removed_after_the_bench_is_not_said_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with workdir(None) as place:
        _bank(place.path)
        _written_late(monkeypatch)  # in this process only: not in its reaper
    assert not place.path.exists()
    assert capsys.readouterr().err == ""


def test_a_parent_the_user_may_enter_but_not_list_loses_the_directory_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR of mode 0300 (write and enter, not list): the parent was opened to list,
    refused (EACCES), and the emptied ``setpay-bench-*`` directory stayed. It is opened as
    a path now, which removes an entry as well. Root lists any directory, so the refusal
    a user meets is made here, only for an open that would list."""
    run = tmp_path / f"{PREFIX}listless"
    run.mkdir()
    _bank(run)
    real_open = os.open

    def listing_refused(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if path == tmp_path and flags & os.O_DIRECTORY and not flags & os.O_PATH:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_workdir.os, "open", listing_refused)
    assert _removed(run) == []
    assert not run.exists()
