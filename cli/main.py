"""The ``setpay`` command: one front door with subcommands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the setpay command line."""
    args = sys.argv[1:] if argv is None else argv
    print("setpay: no subcommands yet", args, file=sys.stderr)
    return 2
