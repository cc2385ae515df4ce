"""The ``setpay`` command: one front door with subcommands.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; this module only wires them and sets up logging.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand -> module, in the order ``setpay --help`` lists them.
SUBCOMMANDS: dict[str, str] = {
    "init": "cli.init",
    "bank": "cli.bank",
    "ca": "cli.ca",
    "gateway": "cli.gateway",
    "merchant": "cli.merchant",
    "wallet": "cli.wallet",
    "demo": "cli.demo",
    "bench": "cli.bench",
    "health": "cli.health",
    "keys": "cli.keys",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="setpay", description="SET (Secure Electronic Transaction) over gRPC."
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        module = importlib.import_module(module_name)
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the setpay command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(SUBCOMMANDS[args.command])
    code: int = module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
