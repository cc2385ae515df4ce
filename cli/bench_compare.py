"""``setpay bench compare``: the medians of JSON reports of ``setpay bench authorize``,
side by side by group (``clients.loadtest.compare``).

Its errors are ``cli.bench``'s: a call without reports is a usage error (``PlanError``).
Its text is written as the bench's is (``stdout_reader.write_text``): a reader that leaves
midway is seen, and the command ends as cut off (``cli.main``), buffered or not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import stdout_reader
from clients.loadtest import compare
from clients.loadtest.errors import PlanError


def add_parser(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``compare`` among the bench's subcommands."""
    c = ops.add_parser("compare", help="medians of JSON reports, side by side by group")
    c.add_argument("reports", nargs="*", type=Path, metavar="REPORT", help="one group")
    c.add_argument(
        "--group", action="append", nargs="+", metavar=("LABEL", "REPORT"), default=[],
        help="a labelled group of reports (repeat: medians against the first group's)",
    )  # fmt: skip
    c.set_defaults(bench_handler=compare_reports)


def compare_reports(args: argparse.Namespace) -> int:
    """Print the medians of the reports, by group."""
    named: list[tuple[str, list[Path]]] = []
    if args.reports:
        named.append(("reports", list(args.reports)))
    for label, *paths in args.group:
        if not paths:
            raise PlanError(f"--group {label}: give at least one report after it")
        named.append((label, [Path(path) for path in paths]))
    if not named:
        raise PlanError("give the JSON reports to compare")
    groups = [compare.Group(label, [compare.read_run(p) for p in paths]) for label, paths in named]
    stdout_reader.write_text(compare.to_text(groups))
    return 0
