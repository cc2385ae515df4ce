"""The report files of a finished ``setpay bench authorize`` run: --json, then --plot.

A file that could not be written fails the run (exit 1, ``cli.bench``), named by its
option and path, whatever the OSError: a broken pipe too (a --json that is a FIFO whose
reader left), which would otherwise pass for standard output's reader gone (``cli.main``)
and end in a traceback. An earlier run's reports never pass for this one's: when the JSON
report could not be written, an earlier --plot file is removed, as a failed run's reports
do (``report.write_failure``); a plot that could not be written leaves the JSON report,
which holds the run's verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from clients.loadtest.bench import BenchResult
from clients.loadtest.errors import BenchError
from clients.loadtest.plot import plot
from clients.loadtest.report import write_json


class ReportNotWritten(BenchError):
    """A report file of a finished run could not be written."""


def write_reports(result: BenchResult, json_path: Path | None, plot_path: Path | None) -> None:
    """Write the reports asked for; ReportNotWritten if one could not be."""
    if json_path is not None:
        try:
            _written("--json", json_path, lambda: write_json(result, json_path))
        except ReportNotWritten:
            if plot_path is not None:
                with suppress(OSError):  # unremovable, the JSON's failure is still said
                    plot_path.unlink(missing_ok=True)
            raise
    if plot_path is not None:
        _written("--plot", plot_path, lambda: plot(result, plot_path))


def _written(option: str, path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ReportNotWritten(f"{option}: could not write {path} ({why})") from exc
