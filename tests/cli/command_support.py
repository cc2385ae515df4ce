"""What the CLI tests share: a ``setpay`` command run in this process through its own
parser, and a command line argparse must refuse as mistyped."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

import pytest

from cli import bank
from tests.clients.cli_support import run_cli

# argparse's exit status for a command line it cannot parse; the commands' own usage
# errors exit with it too.
USAGE = 2


def run_command(
    command: ModuleType, argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``setpay ARGV...`` in this process through the real argument parser of ``command``
    (a ``cli`` module: ``cli.bank``, ``cli.ca``...), ``argv`` starting with its name;
    (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="setpay")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    code = command.run(parser.parse_args(list(argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_bank(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``setpay bank ARGV...``; (status, stdout, stderr)."""
    return run_command(bank, ["bank", *argv], capsys)


def refused_as_usage(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``setpay ARGV...`` (a merchant or wallet command), which argparse must refuse
    before the command runs (exit ``USAGE``); what it wrote to stderr."""
    with pytest.raises(SystemExit) as stopped:
        run_cli(argv, capsys)
    assert stopped.value.code == USAGE
    return capsys.readouterr().err
