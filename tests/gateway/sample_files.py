"""prometheus_client's file-backed samples inside this test process, as a worker's.

The test process imported the client without PROMETHEUS_MULTIPROC_DIR, so its metrics
live in memory; ``as_process`` makes the metrics made from then on write their samples to
files of the directory, under a pid of the test's choosing (several processes' files, one
after the other, without forking), as a served bank's processes do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.ledger import Authorized, CommitStats, Decline, Declined
from gateway.metrics_labels import BANK_RPCS
from setcore.errors import ErrorCode

Sample = tuple[str, frozenset[tuple[str, str]]]


@contextmanager
def as_process(pid: int, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Metrics made within write to ``directory``'s files of ``pid``; closed on leaving."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    # Restored at the test's end: reserve_sample_files installs its own file class.
    monkeypatch.setattr(values, "MmapedDict", values.MmapedDict)
    value_class = values.MultiProcessValue(process_identifier=lambda: pid)
    monkeypatch.setattr(values, "ValueClass", value_class)
    try:
        yield
    finally:
        value_class.close_all_files()


def serve_a_while(rounds: int = 1) -> None:
    """What a worker records as it serves: calls of every bank method, answered and
    refused, key operations, decisions, commits."""
    for _ in range(rounds):
        for service, method in BANK_RPCS:
            for seconds in (0.0004, 0.003, 0.02, 0.3):
                metrics.rpc_started(method)
                metrics.rpc_finished(service, method, seconds, None)
            metrics.rpc_finished(service, method, 0.01, grpc.StatusCode.UNAVAILABLE)
            metrics.rpc_shed(service, method)
        metrics.refused("Authorize", ErrorCode.ERROR_CODE_RRPID_REUSED)
        metrics.authorization_decided(Authorized("h", "c", 12_345, 840, 0, None))
        metrics.authorization_decided(Declined(Decline.EXPIRED_CARD))
        for op, algorithm in (("sign", "ecdsa-p256-sha256"), ("decapsulate", "ecdh-p256")):
            metrics.key_operation(op, algorithm, 0.0002, None)
        metrics.ledger_commit(CommitStats(seconds=0.003, operations=5, retries=1))
        metrics.tls_certificate_valid_until(2e9)


def many_series() -> None:
    """More series than a process's first counters' file holds (64 KiB): every refusal
    code and every gRPC status of every bank method."""
    for service, method in BANK_RPCS:
        for code in ErrorCode.values():
            metrics.refused(method, code)
        for status in grpc.StatusCode:
            metrics.rpc_started(method)
            metrics.rpc_finished(service, method, 0.01, status)


def page_of(directory: Path) -> str:
    """The supervisor's scrape of ``directory``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def samples_of(page: str) -> dict[Sample, float]:
    """A page's samples, as (sample name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
