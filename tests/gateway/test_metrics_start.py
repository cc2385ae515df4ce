"""Prometheus metrics as a process starts: off until enabled, what enabling refuses, and
the sampler's first sample taken before the servers serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway import metrics, process
from gateway.ledger import CommitStats, Decline, Declined
from gateway.scrape import prepare_multiprocess_directory
from setcore.errors import ErrorCode

from .actors import World
from .test_metrics import PG


def test_metrics_are_off_until_enabled() -> None:
    assert not metrics.enabled()
    metrics.rpc_finished(PG, "Authorize", 0.01, None)  # a no-op, not an error
    metrics.refused("Authorize", ErrorCode.ERROR_CODE_RRPID_REUSED)
    # Every other function the serving path calls is one too.
    metrics.rpc_started("Authorize")
    metrics.rpc_shed(PG, "Authorize")
    metrics.answer_failed("Authorize")
    metrics.authorization_decided(Declined(Decline.EXPIRED_CARD))
    metrics.key_operation("sign", "ecdsa-p256-sha256", 0.001, "TransientBackendError")
    metrics.ledger_commit(CommitStats(seconds=0.003, operations=5, retries=2))
    assert not metrics.enabled()


def test_enable_refuses_a_client_imported_without_the_multiprocess_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This test process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR: a
    # worker in that state would write its samples nowhere the supervisor reads.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(metrics.MetricsError, match="imported before PROMETHEUS_MULTIPROC_DIR"):
        metrics.enable(0)
    assert not metrics.enabled()


@pytest.mark.parametrize("worker", [-1, metrics.MAX_WORKER_LABELS])
def test_a_worker_index_outside_the_label_set_is_refused(worker: int) -> None:
    with pytest.raises(metrics.MetricsError, match="worker index must be below 64"):
        metrics.enable(worker)
    assert not metrics.enabled()


def test_a_configured_sample_directory_that_is_not_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "samples"
    not_a_directory.write_text("")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(not_a_directory))
    with pytest.raises(metrics.MetricsError, match="PROMETHEUS_MULTIPROC_DIR is not a directory"):
        prepare_multiprocess_directory()
    assert not_a_directory.read_text() == ""


def test_the_sampler_starts_before_the_servers(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create_server returns a server already serving, its health SERVING: the sampler's
    # first sample (the revocation data's end, which an alert reads) must be on the page
    # by then. Read from the order, not the page: another bank's sampler in this process
    # may have put a value there already.
    order: list[str] = []
    create_server, start = process.create_server, metrics.Sampler.start

    def serving(*args: Any, **kwargs: Any) -> Any:
        order.append("server")
        return create_server(*args, **kwargs)

    def sampling(sampler: metrics.Sampler) -> metrics.Sampler:
        order.append("sampler")
        return start(sampler)

    monkeypatch.setattr(process, "create_server", serving)
    monkeypatch.setattr(metrics.Sampler, "start", sampling)
    running = process.start_bank(ec_world.config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    running.stop(None)
    assert order == ["sampler", "server", "server"]  # the gateway's server, then the CA's
