"""``setpay LIST | head -1``: a command whose reader goes away ends quietly, with the
status a program SIGPIPE ends gets from the shell (128 + 13), not a BrokenPipeError
traceback and exit 1 (or "Exception ignored ..." and exit 120, buffered). Only a pipe
standard output writes to counts: any other BrokenPipeError is still an error. A command
that had already returned a failure, and lost only its last output, keeps its status."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import cli.bank
import cli.wallet
from cli import main as cli_main
from clients.merchant.config import write_config
from clients.peers import PeerConfig
from gateway.provisioning import InitResult, init_bank
from tests.clients.cli_support import run_cli

PROJECT = Path(__file__).resolve().parents[2]
# Bounds each child; a listing takes about a second.
CHILD_TIMEOUT_SECONDS = 60
READER_GONE = 128 + signal.SIGPIPE


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("reader-gone") / "bank", env={})


def _into_closed_pipe(argv: list[str], unbuffered: bool) -> subprocess.CompletedProcess[str]:
    """``setpay ARGV`` writing into a pipe whose reader closed before it started."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    try:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *argv], stdout=write_end, stderr=subprocess.PIPE,
            text=True, check=False, timeout=CHILD_TIMEOUT_SECONDS, cwd=PROJECT, env=env,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A merchant directory; its CA and gateway are never called."""
    directory = tmp_path_factory.mktemp("reader-gone") / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_config(directory, merchant_id="m-reader-gone", name="Shop", gateway=peer, ca=peer)
    return directory


def _listing(made: InitResult, shop: Path, name: str) -> list[str]:
    keys = made.directory / "keys"
    return {
        "ca": ["ca", "list", "--config", str(made.config_path)],
        "keys": ["keys", "list", "--keys", f"soft:{keys};pin-source=file:{keys}.pass"],
        # Its own handler took the error for a failed file: "Broken pipe", exit 1.
        "merchant": ["merchant", "--dir", str(shop), "orders", "new", "--description",
                     "a lamp", "--amount", "3300"],
    }[name]  # fmt: skip


@pytest.mark.parametrize("unbuffered", [True, False])
@pytest.mark.parametrize("listing", ["ca", "keys", "merchant"])
def test_a_listing_ends_quietly_when_its_reader_is_gone(
    made: InitResult, shop: Path, listing: str, unbuffered: bool
) -> None:
    done = _into_closed_pipe(_listing(made, shop, listing), unbuffered)
    assert (done.returncode, done.stderr) == (READER_GONE, "")


@pytest.mark.parametrize("unbuffered", [True, False])
@pytest.mark.parametrize("asked", [["--help"], ["bench", "compare", "--help"]])
def test_help_ends_quietly_when_its_reader_is_gone(asked: list[str], unbuffered: bool) -> None:
    """Buffered, argparse's help failed only at exit: "Exception ignored", exit 120.
    Unbuffered, argparse itself ignored the failed write and exited 0: the status now
    does not depend on the buffering."""
    done = _into_closed_pipe(asked, unbuffered)
    assert (done.returncode, done.stderr) == (READER_GONE, "")


def test_a_usage_error_whose_reader_is_gone_keeps_its_status() -> None:
    """The usage goes to standard error, which is still read: 2, not the help's 141."""
    done = _into_closed_pipe(["--log-level", "verbose", "wallet"], unbuffered=True)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def _breaks(*args: object) -> int:
    raise BrokenPipeError(32, "Broken pipe")


def _stdout_into(fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # In the test itself: pytest puts its own capture back after the fixtures.
    monkeypatch.setattr(sys, "stdout", os.fdopen(fd, "w", closefd=False))


def test_a_broken_pipe_elsewhere_is_still_an_error(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader still at standard output: the broken pipe is another's (a socket, a
    child's pipe), and not hidden."""
    _stdout_into(pipe["write"], monkeypatch)
    monkeypatch.setattr(cli_main, "_run", _breaks)
    with pytest.raises(BrokenPipeError):
        cli_main.main()


def test_the_gone_reader_leaves_standard_output_on_the_null_device(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_end = pipe["write"]
    _stdout_into(write_end, monkeypatch)
    os.close(pipe.pop("read"))
    monkeypatch.setattr(cli_main, "_run", _breaks)
    assert cli_main.main() == READER_GONE
    assert os.path.samestat(os.fstat(write_end), os.stat(os.devnull))
    print("flushed at exit, into nothing", file=sys.stdout, flush=True)


def test_the_wallet_leaves_a_broken_pipe_to_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its handler took it for a failed file ("setpay wallet: [Errno 32] Broken pipe",
    exit 1), as the merchant's did: ``wallet show | head -1`` alike."""
    monkeypatch.setattr(cli.wallet, "load", _breaks)
    with pytest.raises(BrokenPipeError):
        run_cli(["wallet", "--dir", str(tmp_path), "show"], capsys)


def test_the_bank_leaves_a_broken_pipe_to_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``setpay bank`` took it for a failed file ("setpay bank: [Errno 32] Broken pipe",
    exit 1), as the wallet's and the merchant's did."""
    monkeypatch.setattr(cli.bank, "load", _breaks)
    args = argparse.Namespace(config=tmp_path / "setpay.toml", bank_command="show-merchant")
    with pytest.raises(BrokenPipeError):
        cli.bank.run(args)


def _says_then_returns(status: int) -> Callable[..., int]:
    """A command that writes a line (left in standard output's buffer) and returns
    ``status``: only main's final flush meets the gone reader."""

    def command(*args: object) -> int:
        print("a line the reader never reads")
        return status

    return command


@pytest.mark.parametrize("status", [1, 2, 3])
def test_a_failed_command_keeps_its_status_when_only_its_last_output_is_lost(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """``setpay bench ... | head``: a run in doubt (3) or a failure (1) is not masked as
    a reader gone (141), and still ends quietly."""
    _stdout_into(pipe["write"], monkeypatch)
    os.close(pipe.pop("read"))
    monkeypatch.setattr(cli_main, "_run", _says_then_returns(status))
    assert cli_main.main() == status
    assert os.path.samestat(os.fstat(pipe["write"]), os.stat(os.devnull))


def test_a_command_that_succeeded_ends_as_cut_off_when_its_last_output_is_lost(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdout_into(pipe["write"], monkeypatch)
    os.close(pipe.pop("read"))
    monkeypatch.setattr(cli_main, "_run", _says_then_returns(0))
    assert cli_main.main() == READER_GONE
    assert os.path.samestat(os.fstat(pipe["write"]), os.stat(os.devnull))


def _says_then_exits(status: int) -> Callable[..., int]:
    def command(*args: object) -> int:
        print("usage: setpay ...")
        raise SystemExit(status)

    return command


@pytest.mark.parametrize(("status", "ends"), [(2, 2), (0, READER_GONE)])
def test_argparse_s_exit_keeps_its_status_unless_it_succeeded(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch, status: int, ends: int
) -> None:
    """A usage error (2) keeps its status; --help (0) ends as cut off."""
    _stdout_into(pipe["write"], monkeypatch)
    os.close(pipe.pop("read"))
    monkeypatch.setattr(cli_main, "_run", _says_then_exits(status))
    if ends == READER_GONE:
        assert cli_main.main() == READER_GONE
    else:
        with pytest.raises(SystemExit) as ended:
            cli_main.main()
        assert ended.value.code == ends


def test_a_command_cut_off_while_writing_ends_as_cut_off(
    pipe: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its write raised: what it would have returned is never known, and 141 says so."""
    _stdout_into(pipe["write"], monkeypatch)
    os.close(pipe.pop("read"))

    def cut_off(*args: object) -> int:
        print("a line the reader never reads", flush=True)
        return 1

    monkeypatch.setattr(cli_main, "_run", cut_off)
    assert cli_main.main() == READER_GONE
