"""A stop signal that comes while the demo cleans up lets the cleanup finish, and one that
comes just after the bank's init still takes its keys off the token.

Raised inside the cleanup, ``Stopped`` cut it short: in the directory's removal (then
``shutil.rmtree``, now ``cli.bench_workdir.remove``) it left keys and passphrase files
behind while the demo said its temporary directory was removed; in
an ExitStack callback or the token keys' deletion (which catches ``Exception`` only) it
left the rest undone. Between ``init_bank`` and the registration of the keys' deletion it
left the bank's keys on the token, with no word. The demo runs in this process (its
handlers need the main thread); each test sends the signal itself at the moment named.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cli import bench_workdir, demo
from cli.main import main
from tests.cli.demo_support import (
    assert_no_key_left,
    temporary_directories_in,
    token_for_a_demo_here,
)

real_remove = bench_workdir.remove
real_remove_tree = shutil.rmtree


def _signalled_removal(removes: bool, seen: list[Path]) -> Callable[[Path, int], list[Path]]:
    """The directory's removal, sending SIGTERM as it starts on the demo's directory (a
    supervisor's stop, just as the cleanup reaches it), then removing it or not; each
    directory it was given added to ``seen``."""

    def remove(directory: Path, held: int) -> list[Path]:
        seen.append(directory)
        if directory.name.startswith("setpay-demo-"):
            os.kill(os.getpid(), signal.SIGTERM)
            if not removes:
                return []
        return real_remove(directory, held)

    return remove


def _demo(*more: str) -> int:
    return main(["demo", "--json", *more])


def _signalled_in_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    *, removes: bool, seen: list[Path] | None = None,
) -> str:  # fmt: skip
    """Run the demo, signalled as it removes its temporary directory (made in
    ``tmp_path``), which then goes or stays: its stderr, once it exited on the signal."""
    temporary_directories_in(tmp_path, monkeypatch)
    monkeypatch.setattr(
        bench_workdir, "remove", _signalled_removal(removes, [] if seen is None else seen)
    )
    code = _demo()
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM, err
    return err


def test_a_signal_as_the_directory_is_removed_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _signalled_in_cleanup(tmp_path, monkeypatch, capsys, removes=True)
    assert list(tmp_path.rglob("*")) == []
    assert err == "setpay demo: stopped by SIGTERM; its temporary directory removed\n"


def test_a_directory_that_stays_is_not_said_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A directory its reaper cannot remove either: one that removes nothing stands in.
    monkeypatch.setattr(bench_workdir, "_reaper", _idle_reaper)
    seen: list[Path] = []
    err = _signalled_in_cleanup(tmp_path, monkeypatch, capsys, removes=False, seen=seen)
    (left,) = seen
    real_remove_tree(left)
    assert err == (
        f"setpay demo: could not remove {left}, which holds keys and passphrase files: "
        f"remove it\nsetpay demo: stopped by SIGTERM; its temporary directory {left} could "
        "not be removed (said above)\n"
    )


def test_a_directory_the_demo_left_is_removed_by_its_reaper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its reaper is another process: the removal this test made fail is not its own.
    err = _signalled_in_cleanup(tmp_path, monkeypatch, capsys, removes=False)
    assert list(tmp_path.rglob("*")) == []
    assert err == "setpay demo: stopped by SIGTERM; its temporary directory removed\n"


@contextmanager
def _idle_reaper(directory: Path, held: int) -> Iterator[int]:
    """A reaper that removes nothing: the pipe's write end, and no process to read it."""
    read, write = os.pipe()
    try:
        yield write
    finally:
        os.close(read)
        os.close(write)


def test_a_signal_just_after_the_banks_init_takes_its_keys_off_the_token(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    token = token_for_a_demo_here(tmp_path, tmp_path_factory, monkeypatch)
    real_init = demo.init_bank

    def init_bank(*args: Any, **kwargs: Any) -> Any:
        made = real_init(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the keys are on the token now
        return made

    monkeypatch.setattr(demo, "init_bank", init_bank)
    code = _demo("--keys", token.uri())
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM, err
    assert list(tmp_path.glob("setpay-demo-*")) == []
    assert_no_key_left(token)
