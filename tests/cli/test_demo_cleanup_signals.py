"""A stop signal that comes while the demo cleans up lets the cleanup finish, and one that
comes just after the bank's init still takes its keys off the token.

Raised inside the cleanup, ``Stopped`` cut it short: in ``shutil.rmtree`` it left keys
and passphrase files behind while the demo said its temporary directory was removed; in
an ExitStack callback or the token keys' deletion (which catches ``Exception`` only) it
left the rest undone. Between ``init_bank`` and the registration of the keys' deletion it
left the bank's keys on the token, with no word. The demo runs in this process (its
handlers need the main thread); each test sends the signal itself at the moment named.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import demo
from cli.main import main
from tests.cli.demo_support import (
    assert_no_key_left,
    temporary_directories_in,
    token_for_a_demo_here,
)

real_rmtree = shutil.rmtree


def _signalled_removal(removes: bool) -> Callable[..., None]:
    """``shutil.rmtree`` that sends SIGTERM as it starts on the demo's directory (a
    supervisor's stop, just as the cleanup reaches it), then removes it or not."""

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name.startswith("setpay-demo-"):
            os.kill(os.getpid(), signal.SIGTERM)
            if not removes:
                return
        real_rmtree(path, *args, **kwargs)

    return rmtree


def _demo(*more: str) -> int:
    return main(["demo", "--json", *more])


def _signalled_in_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    *, removes: bool,
) -> str:  # fmt: skip
    """Run the demo, signalled as it removes its temporary directory (made in
    ``tmp_path``), which then goes or stays: its stderr, once it exited on the signal."""
    temporary_directories_in(tmp_path, monkeypatch)
    monkeypatch.setattr(shutil, "rmtree", _signalled_removal(removes))
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
    err = _signalled_in_cleanup(tmp_path, monkeypatch, capsys, removes=False)
    (left,) = tmp_path.glob("setpay-demo-*")
    real_rmtree(left)
    assert err == (
        f"setpay demo: could not remove {left}, which holds keys and passphrase files: "
        f"remove it\nsetpay demo: stopped by SIGTERM; its temporary directory {left} could "
        "not be removed (said above)\n"
    )


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
