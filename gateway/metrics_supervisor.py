"""The supervisor's own metrics, and the sample files its dead children leave behind.

The supervisor counts its workers and their restarts; its endpoint (``gateway.scrape``)
merges every process's sample files. When a worker or the ledger process exits, its live
gauges' files go (``mark_process_dead``), or the merge would count it as running; its
counters' and histograms' files are folded into the files of the processes gone
(``metrics_files.fold_process_gone``), so that totals never step back and the directory
does not grow with every death. ``gateway.metrics`` exports these functions; see it for
the list of metrics.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.metrics_files import (
    MULTIPROC_ENV,
    SampleSpaceError,
    fold_process_gone,
    on_full,
    reserve_sample_files,
    samples_full,
)

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

log = logging.getLogger("setpay.metrics")


class _SupervisorMetrics:
    """The metric objects of the supervisor process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge  # noqa: PLC0415 - see gateway.metrics

        self.restarts: Counter = Counter(
            "setpay_worker_restarts_total", "Workers restarted after dying", registry=None
        )
        self.workers: Gauge = Gauge(
            "setpay_workers", "Worker processes running", multiprocess_mode="livemax",
            registry=None,
        )  # fmt: skip


class _Sink:
    """Where the supervisor records (None: off), and the sample directory it tidies (None:
    no processes' files to tidy)."""

    metrics: _SupervisorMetrics | None = None
    directory: Path | None = None


# Process-wide like the rest of the metrics (``gateway.metrics``).
_sink = _Sink()


def enable_supervisor(workers: int) -> None:
    """Turn on the supervisor's own metrics (after ``scrape.prepare_multiprocess_directory``).

    Raises ``MetricsError`` where prometheus_client's sample files cannot be reserved
    (``metrics_files``). A full disk turns the supervisor's own metrics off, said once; it
    goes on tidying the directory and serving the workers' samples.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    _sink.directory = Path(configured) if configured else None
    on_full(_own_metrics_off)
    try:
        reserve_sample_files()
        _sink.metrics = _SupervisorMetrics()
        _sink.metrics.workers.set(workers)
    except SampleSpaceError as exc:
        samples_full(exc)


def _own_metrics_off() -> None:
    _sink.metrics = None


def disable() -> None:
    """Turn them off (``gateway.metrics.disable``)."""
    _sink.metrics = None
    _sink.directory = None


def worker_gone(pid: int, running: int) -> None:
    """A worker exited: tidy its files away; ``running`` workers are left."""
    _process_gone(pid)
    s = _sink.metrics
    if s is not None:
        s.workers.set(running)


def ledger_process_gone(pid: int) -> None:
    """The ledger process exited: tidy its files away (it has files like a worker's)."""
    _process_gone(pid)


def worker_restarted(running: int) -> None:
    """The supervisor started a worker in place of one that died."""
    s = _sink.metrics
    if s is not None:
        s.restarts.inc()
        s.workers.set(running)


def _process_gone(pid: int) -> None:
    """Drop the live gauges of ``pid``, exited, and fold its counters and histograms."""
    directory = _sink.directory
    if directory is None:
        return
    from prometheus_client import multiprocess  # noqa: PLC0415 - see gateway.metrics

    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    try:
        fold_process_gone(directory, pid)
    except (SampleSpaceError, OSError) as exc:
        # Its files stay, and are counted: only the directory is not kept small.
        log.error("the sample files of process %d, gone, stay unfolded: %s", pid, exc)
