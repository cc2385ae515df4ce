"""How the bench's temporary directory is removed (``cli.bench_workdir.remove``), by the
bench on its way out and by its reaper alike: through the descriptor held since it was
made, and crossing no mount.

Before, both removed it by path (``shutil.rmtree``): a directory the same user renamed in
under that path after the reaper's check, or during the run, was removed instead, and the
run's own, its keys in it, left; a mount inside it (a bind mount, another file system)
was entered and emptied, its source's files deleted. The mount tests mount, so they run
as root (``make test``): a mount refused fails them, as a skip would count the check done.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from cli.bench_workdir import PREFIX, reap, workdir

# What a mount inside the directory is: a bind mount of a directory (the same device as
# its source: only the mount id tells it), another file system, a file mounted over.
MOUNTS = ["bind", "tmpfs", "file"]


def _bank(directory: Path) -> Path:
    """A bank's keys in ``directory``, as ``setpay init`` leaves them; the keys' file."""
    (directory / "bank").mkdir()
    keys = directory / "bank" / "keys"
    keys.write_text("bench key")
    return keys


def _reap(directory: Path) -> None:
    """The reaper of ``directory``, the last holder of its pipe gone."""
    held = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    read, write = os.pipe()
    os.close(write)
    try:
        reap(read, directory, held)
    finally:
        os.close(read)
        os.close(held)


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "users-project"
    users.mkdir()
    (users / "precious").write_text("kept")
    return users


def test_a_directory_swapped_in_after_the_reapers_check_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / f"{PREFIX}run"
    run.mkdir()
    keys = _bank(run)
    users = _users(tmp_path)
    moved = tmp_path / "moved-away"
    real = os.path.samestat
    swapped: list[bool] = []

    def checked_then_swapped(found: os.stat_result, held: os.stat_result) -> bool:
        same = real(found, held)
        if not swapped:  # what another process of the same user could do in that instant
            swapped.append(True)
            run.rename(moved)
            users.rename(run)
        return same

    monkeypatch.setattr(os.path, "samestat", checked_then_swapped)
    _reap(run)
    assert swapped
    # Before: the user's directory, now at the run's path, was removed, and the run's own
    # kept its keys.
    assert (run / "precious").read_text() == "kept"
    assert not (moved / keys.relative_to(run)).exists() and list(moved.iterdir()) == []


def test_a_directory_swapped_in_during_the_run_is_not_removed_by_the_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    users = _users(tmp_path)
    moved = tmp_path / "moved-away"
    with workdir(None) as place:
        keys = _bank(place.path)
        place.path.rename(moved)
        users.rename(place.path)
    # Before: the bench removed whatever its path named, the user's directory.
    assert (place.path / "precious").read_text() == "kept"
    assert not (moved / keys.relative_to(place.path)).exists() and list(moved.iterdir()) == []


def _run(argv: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a file system: run the suite as root (make test)")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@contextmanager
def _mounted(kind: str, source: Path, target: Path) -> Iterator[None]:
    """``source`` mounted (``kind``: ``MOUNTS``) on ``target``, unmounted afterwards."""
    if kind == "tmpfs":
        _run(["mount", "-t", "tmpfs", "-o", "size=1m", "setpay-test", str(target)])
        (target / "precious").write_text("kept")
    else:
        _run(["mount", "--bind", str(source), str(target)])
    try:
        yield
    finally:
        _run(["umount", str(target)])


def _mount_in(kind: str, tmp_path: Path, directory: Path) -> tuple[Path, Path, Path]:
    """A mount of ``kind`` to go in ``directory``: its source, its target, and the user's
    file it shows there."""
    target = directory / "bank" / "mounted"
    if kind == "file":
        source = tmp_path / "precious"
        source.write_text("kept")
        target.write_text("")
        return source, target, target
    source = tmp_path / "source"
    source.mkdir()
    (source / "precious").write_text("kept")
    target.mkdir()
    return source, target, target / "precious"


def _kept(kind: str, source: Path) -> None:
    """The user's file, seen from the mount's source once unmounted (a tmpfs has none)."""
    if kind == "file":
        assert source.read_text() == "kept"
    elif kind == "bind":
        assert (source / "precious").read_text() == "kept"


@pytest.mark.parametrize("kind", MOUNTS)
def test_the_reaper_crosses_no_mount(tmp_path: Path, kind: str) -> None:
    run = tmp_path / f"{PREFIX}run"
    run.mkdir()
    keys = _bank(run)
    source, target, shown = _mount_in(kind, tmp_path, run)
    with _mounted(kind, source, target):
        _reap(run)
        # Before: the mount was entered and emptied, a bind mount's source's files too.
        assert shown.read_text() == "kept"
        assert not keys.exists() and [path.name for path in run.iterdir()] == ["bank"]
        assert [path.name for path in (run / "bank").iterdir()] == ["mounted"]
    _kept(kind, source)


@pytest.mark.parametrize("kind", MOUNTS)
def test_the_bench_crosses_no_mount_and_says_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    with ExitStack() as mounts:
        with workdir(None) as place:
            keys = _bank(place.path)
            source, target, shown = _mount_in(kind, tmp_path, place.path)
            mounts.enter_context(_mounted(kind, source, target))
        # Before: the mount was entered and emptied, and nothing said.
        assert shown.read_text() == "kept"
        assert not keys.exists()
        assert capsys.readouterr().err == (
            f"setpay bench: {place.path} left: {target} (on another mount: neither entered"
            " nor removed)\n"
        )
    _kept(kind, source)
