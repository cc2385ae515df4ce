"""Prometheus metrics of processes gone: the supervisor folds a dead worker's or ledger
process's counters and histograms into the files of the processes gone, so the totals
never step back and the sample directory does not grow with every death."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from gateway import metrics, metrics_files, metrics_sampler, scrape
from gateway.scrape import prepare_multiprocess_directory
from tests.metrics_page import check_with_promtool

from .sample_files import Sample, as_process, many_series, page_of, samples_of, serve_a_while

SUPERVISOR = 100
# Simulated deaths: a crash loop's worth, scaled down (each adds two files on old code).
DEATHS = 40


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The sample directory of a supervisor (pid SUPERVISOR) with metrics on."""
    directory = tmp_path / "samples"
    directory.mkdir()
    with as_process(SUPERVISOR, directory, monkeypatch):
        metrics.enable_supervisor(2)
        try:
            yield directory
        finally:
            metrics.disable()


def _a_process_serves(
    pid: int, worker: int, directory: Path, monkeypatch: pytest.MonkeyPatch, rounds: int = 1
) -> None:
    with as_process(pid, directory, monkeypatch):
        metrics.enable(worker)
        serve_a_while(rounds)
        # As the process ends: a sampler another test left running in this process
        # must not write into its files once it is gone.
        metrics_sampler.disable()


def _assert_same_totals(after: dict[Sample, float], before: dict[Sample, float]) -> None:
    # The counters' and histograms' samples; the gauges tell of the live processes (the
    # dead one's are dropped, and setpay_workers counts one fewer, by design).
    def folded(page: dict[Sample, float]) -> dict[Sample, float]:
        kept = ("_total", "_bucket", "_count", "_sum")
        return {k: v for k, v in page.items() if k[0].endswith(kept)}

    after, before = folded(after), folded(before)
    assert set(after) == set(before)
    for sample, value in before.items():
        # Counts are whole numbers, exact; sums of seconds are added in another order.
        assert after[sample] == pytest.approx(value, rel=1e-12), sample


def test_deaths_leave_a_bounded_directory_and_the_same_totals(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisors = {p.name for p in samples.iterdir()}
    _a_process_serves(200, 1, samples, monkeypatch)  # a worker that stays alive
    for n in range(DEATHS):
        pid = 1_000 + n
        _a_process_serves(pid, 0, samples, monkeypatch, rounds=1 + n % 3)
        before = samples_of(page_of(samples))
        if n % 10 == 9:
            metrics.ledger_process_gone(pid)  # the ledger process leaves the same files
        else:
            metrics.worker_gone(pid, 1)
        _assert_same_totals(samples_of(page_of(samples)), before)
        assert not list(samples.glob(f"*_{pid}.db"))
    # The supervisor's own, the live worker's, and one per type for the processes gone.
    assert {p.name for p in samples.iterdir()} == supervisors | {
        "counter_200.db", "histogram_200.db", "gauge_livesum_200.db", "gauge_livemin_200.db",
        "counter_gone.db", "histogram_gone.db",
    }  # fmt: skip
    page = page_of(samples)
    check_with_promtool(page)
    totals = samples_of(page)
    # Every death counted: 41 processes, 1 to 3 rounds each (the live one: 1).
    rounds = 1 + sum(1 + n % 3 for n in range(DEATHS))
    # Five calls of each method a round, one of them answered UNAVAILABLE.
    labels = frozenset({("service", "setpay.v1.PaymentGatewayService"), ("method", "Authorize")})
    assert totals[("setpay_rpc_requests_total", labels)] == 5 * rounds
    # Histogram buckets stay cumulative: the last bucket is the count.
    count = totals[("setpay_rpc_duration_seconds_count", frozenset({("method", "Authorize")}))]
    inf = totals[
        ("setpay_rpc_duration_seconds_bucket", frozenset({("method", "Authorize"), ("le", "+Inf")}))
    ]
    assert count == inf == 5 * rounds
    # The client writes no _created sample into the files; the fold makes none either.
    assert not [s for s in totals if s[0].endswith("_created")]


def test_a_fold_that_cannot_reserve_its_file_leaves_every_file_as_it_was(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _a_process_serves(1_000, 0, samples, monkeypatch)
    metrics.worker_gone(1_000, 1)
    _a_process_serves(1_001, 1, samples, monkeypatch)
    gone = (samples / "counter_gone.db").read_bytes()
    before = samples_of(page_of(samples))

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics_files.os, "pwrite", full)
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.worker_gone(1_001, 1)  # no exception: the supervisor goes on
    assert (samples / "counter_1001.db").exists()
    assert (samples / "histogram_1001.db").exists()
    assert (samples / "counter_gone.db").read_bytes() == gone
    assert not list(samples.glob("*.partial"))
    _assert_same_totals(samples_of(page_of(samples)), before)
    assert "the sample files of process 1001, gone, stay unfolded" in caplog.text
    assert "is full (No space left on device)" in caplog.text


def test_a_fold_whose_second_reservation_fails_leaves_nothing_half_made(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with as_process(1_000, samples, monkeypatch):
        metrics.enable(0)
        serve_a_while()
        many_series()  # more than the first 64 KiB of the file the fold makes
        metrics_sampler.disable()
    before = samples_of(page_of(samples))
    real = metrics_files._reserve
    reservations: list[tuple[object, ...]] = []

    def second_fails(*args: object) -> None:
        # The first makes the file of the processes gone; whatever comes second fails.
        reservations.append(args)
        if len(reservations) == 2:
            error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise metrics_files.SampleSpaceError(str(samples / "counter_gone.db"), error)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(metrics_files, "_reserve", second_fails)
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.worker_gone(1_000, 1)
    assert len(reservations) == 2
    # Old code: counter_gone.db.partial was left, made outside the fold's cleanup.
    assert not list(samples.glob("*.partial"))
    assert not list(samples.glob("*_gone.db"))
    assert (samples / "counter_1000.db").exists()
    assert (samples / "histogram_1000.db").exists()
    _assert_same_totals(samples_of(page_of(samples)), before)
    assert "the sample files of process 1000, gone, stay unfolded" in caplog.text


def test_a_histogram_series_cut_off_in_the_making_is_not_folded(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _a_process_serves(1_000, 0, samples, monkeypatch)
    # What a disk filling between a series' sum and its last bucket leaves in its file.
    name = "setpay_key_operation_duration_seconds"
    documentation = "Time of one key-backend operation"
    labels, cut_off = ["op", "algorithm"], ["sign", "cut-off"]
    written = MmapedDict(str(samples / "histogram_1000.db"))  # type: ignore[no-untyped-call]
    try:
        for key in (
            mmap_key(name, f"{name}_sum", labels, cut_off, documentation),
            mmap_key(name, f"{name}_bucket", [*labels, "le"], [*cut_off, "0.001"], documentation),
        ):
            written.write_value(key, 1.0, 0.0)  # type: ignore[no-untyped-call]
    finally:
        written.close()  # type: ignore[no-untyped-call]
    metrics.worker_gone(1_000, 1)
    page = page_of(samples)
    totals = samples_of(page)
    # Old code: folded for good, a sum and a bucket with no +Inf.
    assert not [s for s in totals if ("algorithm", "cut-off") in s[1]]
    whole = {("op", "sign"), ("algorithm", "ecdsa-p256-sha256"), ("le", "+Inf")}
    assert totals[(f"{name}_bucket", frozenset(whole))] == 1  # the whole ones stay
    check_with_promtool(page)


def test_nothing_is_folded_without_a_sample_directory(tmp_path: Path) -> None:
    # The supervisor's metrics off (the default in-process): a process gone is no work.
    (tmp_path / "counter_7.db").write_bytes(b"")
    metrics.worker_gone(7, 0)
    metrics.ledger_process_gone(7)
    assert (tmp_path / "counter_7.db").exists()


def test_a_starting_bank_removes_files_a_run_left_half_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_gone.db.partial").write_bytes(b"\0" * 8)
    (tmp_path / "README").write_text("the operator's own file\n")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(scrape, "client_is_multiprocess", lambda: True)
    prepare_multiprocess_directory()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README"]
