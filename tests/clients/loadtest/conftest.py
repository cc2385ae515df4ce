"""What the bench's end-to-end tests share: running ``setpay bench`` in this process."""

from __future__ import annotations

import argparse

from cli import bench


def run_bench(argv: list[str]) -> int:
    """``setpay bench ARGV...`` through the real argument parser; its exit status."""
    parser = argparse.ArgumentParser(prog="setpay")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return bench.run(parser.parse_args(["bench", *argv]))
