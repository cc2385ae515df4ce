"""``setpay`` itself: ``--log-level`` takes logging's levels only, and a subcommand's
module is imported only when the command line names it, so that one whose code cannot
be imported breaks that subcommand alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli.main import SUBCOMMANDS, build_parser, main
from clients.peers import PeerConfig
from clients.wallet.config import write_config

USAGE = 2
# Every subcommand, named here rather than read from cli.main: the tests hold main to them.
NAMES = ("init", "bank", "ca", "gateway", "merchant", "wallet", "demo", "bench", "health", "keys")


def _exit_status(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return stopped.value.code


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """It used to mean WARNING, silently: a typo'd DEBUG gave no debug output, and no word."""
    assert _exit_status(["--log-level", "verbose", "wallet", "--help"]) == USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert "argument --log-level: invalid choice: 'VERBOSE'" in err
    assert "'DEBUG', 'INFO', 'WARNING', 'WARN', 'ERROR', 'CRITICAL', 'FATAL'" in err


@pytest.mark.parametrize(
    ("given", "level"),
    [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARNING"), ("error", "ERROR"),
     ("warn", "WARN"), ("fatal", "FATAL")],
)  # fmt: skip
def test_a_log_level_is_taken_in_any_case(given: str, level: str) -> None:
    args = build_parser().parse_args(["--log-level", given, "health", "--target", "h:1"])
    assert args.log_level == level


def test_a_subcommand_that_cannot_be_imported_breaks_only_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bank's code fails to import (here a module under it; a missing library alike).
    monkeypatch.delitem(sys.modules, "cli.bank", raising=False)
    monkeypatch.setitem(sys.modules, "gateway.issuer", None)
    assert _exit_status(["wallet", "--help"]) == 0
    assert "register" in capsys.readouterr().out
    directory = tmp_path / "wallet"
    write_config(directory, ca=PeerConfig("127.0.0.1:9", directory / "tls/root.pem"))
    # A wallet command runs (to its own usage error, which needs no CA or passphrase).
    status = main(["wallet", "--dir", str(directory), "purchase", "--lid-m", "ab"])
    assert status == USAGE
    assert "give --initiation FILE" in capsys.readouterr().err
    with pytest.raises(ImportError):  # the bank itself fails loudly, as before
        main(["bank", "show-account", "--account", "a"])


def test_help_lists_every_subcommand_importing_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NAMES:
        monkeypatch.setitem(sys.modules, f"cli.{name}", None)  # importing it would fail
    assert _exit_status(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for name in NAMES:
        assert f"{name} {SUBCOMMANDS[name][1]}" in shown


def test_the_listing_is_the_subcommands_own() -> None:
    """main's help lines are the modules' (the first parse lists them unimported)."""
    assert tuple(SUBCOMMANDS) == NAMES
    assert build_parser(wired=()).format_help() == build_parser().format_help()


def test_a_wrong_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status(["wallets", "show"]) == USAGE
    assert "argument COMMAND: invalid choice: 'wallets'" in capsys.readouterr().err


def test_an_unknown_top_level_option_is_refused_before_any_import(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bank's module would fail to import: the usage error must come first.
    monkeypatch.setitem(sys.modules, "cli.bank", None)
    assert _exit_status(["--verbose", "bank", "show-account", "--account", "a"]) == USAGE
    assert "unrecognized arguments: --verbose" in capsys.readouterr().err


def test_a_subcommand_option_is_left_to_the_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Options after the subcommand's name are its own, even one the top level lacks."""
    assert _exit_status(["health", "--target", "h:1", "--verbose"]) == USAGE
    assert "unrecognized arguments: --verbose" in capsys.readouterr().err
    assert _exit_status(["health", "--help"]) == 0
    assert "--target" in capsys.readouterr().out
