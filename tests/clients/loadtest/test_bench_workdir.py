"""Where ``setpay bench authorize --spawn`` keeps its bank (``cli.bench_workdir``).

A bench killed with SIGKILL left its temporary directory, the bank it made and its keys,
behind for good: its reaper now removes it once the last process writing there (the
servers, stopped by their lifelines) is gone, and never a ``--workdir`` the user gave. The
reaper's parts: it waits for every holder of its pipe, removes only the directory it was
started for, and follows no symbolic link out of it. And the refusals of a ``--workdir``
that is a file or an earlier run's directory, before anything starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.bench_workdir import PREFIX, reap, workdir
from clients.loadtest.cpu import descendants

from .conftest import run_bench
from .process_support import gone, kill_left
from .test_bench_killed import (
    _SUBREAPER,
    RUNNING,
    STOPPED_SECONDS,
    _cmdline,
    _wait_for,
)

USAGE = 2
# How long the reaper may take to remove the directory once the servers are gone: its
# start-up is long done, the end of its pipe comes with the last server's exit.
REMOVED_SECONDS = 10.0
# How long a reaper with a holder left is watched not to remove anything.
HELD_SECONDS = 0.5


def _kill_a_running_bench(
    tmp_path: Path, options: list[str], temporary: Path | None = None
) -> list[Path]:
    """Run the bench with ``options`` under the test's subreaper, SIGKILL it once its load
    flows, and wait for its servers and every other process it left to be gone; the
    bench's directories in ``temporary`` (its TMPDIR, if given) when it was killed."""
    bench = [
        sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn", "--ceiling",
        "--rate", "2", "--duration", "60", "--no-warmup", "--cardholders", "2", *options,
    ]  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    subreaper = subprocess.Popen(
        [sys.executable, "-c", _SUBREAPER, str(out), *bench],
        env={**os.environ, **({} if temporary is None else {"TMPDIR": str(temporary)})},
        start_new_session=True,
    )  # fmt: skip
    left: list[int] = []
    made: list[Path] = []
    try:
        _wait_for(out / "bench.out", RUNNING, subreaper)
        bench_pid = int((out / "bench.pid").read_text())
        servers: list[int] = []
        for root in descendants([bench_pid]):
            if " serve " in _cmdline(root) and root not in left:
                servers.append(root)
                left += [pid for pid in descendants([root]) if pid not in left]
        assert len(servers) == 3, servers
        if temporary is not None:
            made = list(temporary.glob(f"{PREFIX}*"))
            assert [(directory / "bank" / "keys").is_dir() for directory in made] == [True]
        os.kill(bench_pid, signal.SIGKILL)
        assert gone(left, STOPPED_SECONDS), "the bench's servers outlived it"
        subreaper.wait(STOPPED_SECONDS)  # every process handed to it reaped: the reaper too
    finally:
        kill_left(left)
        if subreaper.poll() is None:
            subreaper.kill()
            subreaper.wait()
    return made


def _gone_within(path: Path, seconds: float) -> bool:
    give_up = time.monotonic() + seconds
    while os.path.lexists(path):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)
    return True


def test_a_bench_killed_with_sigkill_leaves_no_temporary_directory(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    (made,) = _kill_a_running_bench(tmp_path, [], temporary)
    # Before, the directory stayed, its bank's keys in it, until someone removed it by hand.
    assert _gone_within(made, REMOVED_SECONDS), sorted(made.rglob("*"))


def test_a_bench_killed_with_sigkill_keeps_the_workdir_given(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _kill_a_running_bench(tmp_path, ["--workdir", str(work)])
    time.sleep(HELD_SECONDS)
    assert (work / "bank" / "setpay.toml").is_file()


def test_a_finished_run_keeps_its_workdir_and_removes_its_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "given"
    with workdir(given) as place:
        assert place.holds is None  # no reaper
        (place.path / "file").write_text("kept")
    assert (given / "file").read_text() == "kept"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with workdir(None) as place:
        assert place.path.name.startswith(PREFIX) and place.holds is not None
        (place.path / "bank").mkdir()
    assert not place.path.exists()


def _reaping(read: int, directory: Path) -> threading.Thread:
    held = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    def reaping() -> None:
        try:
            reap(read, directory, held)
        finally:
            os.close(held)

    thread = threading.Thread(target=reaping)
    thread.start()
    return thread


def test_the_reaper_waits_for_every_holder_of_its_pipe(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "keys").write_text("secret")
    read, write = os.pipe()
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE, pass_fds=(write,))  # fmt: skip
    os.close(write)
    try:
        thread = _reaping(read, directory)
        thread.join(HELD_SECONDS)
        assert thread.is_alive() and (directory / "keys").exists()  # a server still writes
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    thread.join(REMOVED_SECONDS)
    os.close(read)
    assert not thread.is_alive() and not directory.exists()


def test_the_reaper_removes_only_its_own_directory_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("kept")
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "link").symlink_to(outside)
    (directory / "bank").mkdir()
    (directory / "bank" / "link").symlink_to(outside / "precious")
    read, write = os.pipe()
    thread = _reaping(read, directory)
    os.close(write)
    thread.join(REMOVED_SECONDS)
    os.close(read)
    assert not directory.exists()
    assert (outside / "precious").read_text() == "kept"

    # Its path now names another directory, or a link: left alone.
    for replaced in ("directory", "link"):
        directory.mkdir()
        read, write = os.pipe()
        thread = _reaping(read, directory)
        directory.rmdir()
        if replaced == "directory":
            directory.mkdir()
        else:
            directory.symlink_to(outside)
        os.close(write)
        thread.join(REMOVED_SECONDS)
        os.close(read)
        assert os.path.lexists(directory) and (outside / "precious").exists()
        if replaced == "directory":
            directory.rmdir()
        else:
            directory.unlink()


RUN = ["--rate", "1", "--duration", "1", "--no-warmup", "--cardholders", "1"]


def test_a_workdir_that_is_a_file_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("the user's")
    code = run_bench(["authorize", "--spawn", "--workdir", str(file), *RUN])
    err = capsys.readouterr().err
    # Before: exit 1, "setpay bench: [Errno 17] File exists: '...'".
    assert code == USAGE, err
    assert err == f"setpay bench: --workdir: {file} exists and is not a directory\n"
    assert file.read_text() == "the user's"


@pytest.mark.parametrize("left", ["an earlier bank", "a file"])
def test_a_workdir_not_empty_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], left: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if left == "a file":
        (work / "bank.log").write_text("an earlier run's log\n")
    else:
        (work / "bank").mkdir()
        (work / "bank" / "setpay.toml").write_text("[bank]\n")
    before = sorted(path.name for path in work.rglob("*"))
    code = run_bench(["authorize", "--spawn", "--workdir", str(work), *RUN])
    err = capsys.readouterr().err
    # Before: an earlier bank failed the run at `setpay init` (exit 1, its log's tail); a
    # stray file had the run write beside it, appending to an earlier run's log.
    assert code == USAGE, err
    assert err.startswith(f"setpay bench: --workdir: {work} is not empty: "), err
    assert sorted(path.name for path in work.rglob("*")) == before
