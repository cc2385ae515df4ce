"""Running ``setpay merchant`` / ``setpay wallet`` commands in-process, as the CLI would."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

import cli.merchant
import cli.wallet


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse ``argv`` with the subcommands' own parsers, run it; (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="setpay")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.merchant.add_parser(sub)
    cli.wallet.add_parser(sub)
    args = parser.parse_args(list(argv))
    module = cli.merchant if args.command == "merchant" else cli.wallet
    capsys.readouterr()
    status = module.run(args)
    out, err = capsys.readouterr()
    return status, out, err
