"""The supervisor's own metrics, and the sample files its dead children leave behind.

The supervisor counts its workers and their restarts; its endpoint (``gateway.scrape``)
merges every process's sample files. When a worker or the ledger process exits, its live
gauges' files go (``mark_process_dead``), or the merge would count it as running; its
counters' and histograms' files stay, so that totals never step back. ``gateway.metrics``
exports these functions; see it for the list of metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge


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
    """Where the supervisor records: None means off."""

    metrics: _SupervisorMetrics | None = None


# Process-wide like the rest of the metrics (``gateway.metrics``).
_sink = _Sink()


def enable_supervisor(workers: int) -> None:
    """Turn on the supervisor's own metrics (after ``scrape.prepare_multiprocess_directory``)."""
    _sink.metrics = _SupervisorMetrics()
    _sink.metrics.workers.set(workers)


def disable() -> None:
    """Turn them off (``gateway.metrics.disable``)."""
    _sink.metrics = None


def worker_gone(pid: int, running: int) -> None:
    """A worker exited: drop its live gauges; ``running`` workers are left."""
    s = _sink.metrics
    if s is None:
        return
    _drop_live_gauges(pid)
    s.workers.set(running)


def ledger_process_gone(pid: int) -> None:
    """The ledger process exited: drop its live gauges (it has files like a worker's)."""
    if _sink.metrics is not None:
        _drop_live_gauges(pid)


def worker_restarted(running: int) -> None:
    """The supervisor started a worker in place of one that died."""
    s = _sink.metrics
    if s is not None:
        s.restarts.inc()
        s.workers.set(running)


def _drop_live_gauges(pid: int) -> None:
    from prometheus_client import multiprocess  # noqa: PLC0415 - see gateway.metrics

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
