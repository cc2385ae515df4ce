"""Prometheus metrics where a sample file cannot be made at all: no inode left on the sample
directory's filesystem (blocks to spare), a quota, a full directory. Like a full disk, it
turns the process's metrics off, said in one ERROR line, and the process goes on
serving; the old code let the OSError out of the serving functions, and every call of
the worker failed UNKNOWN for as long as it lasted. On a real tmpfs of few inodes
(mounting one needs root, as the CI has: where it cannot, the tests fail) and with the
failures that a tmpfs cannot make injected."""

from __future__ import annotations

import errno
import logging
import mmap
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway import metrics, metrics_files
from tests.metrics_page import check_with_promtool

from .sample_files import as_process, many_series, page_of, samples_of, serve_a_while, tmpfs
from .served import REPOSITORY, ServedBank, serve_bank

# Inodes for the root directory, a worker's first files and another program's files.
FEW_INODES = "size=4m,nr_inodes=64"
TURNED_OFF = "metrics turned off in this process"
FULL = "is full (No space left on device)"


def _take_every_inode(directory: Path) -> None:
    """Make empty files in ``directory`` until its filesystem has no inode left, as another
    program would (its blocks stay free)."""
    n = 0
    with pytest.raises(OSError) as full:
        while True:
            (directory / f"other-{n}").touch()
            n += 1
    assert full.value.errno == errno.ENOSPC, full.value
    assert os.statvfs(directory).f_bavail > 0  # blocks to spare: only the inodes ran out


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of FEW_INODES, unmounted after the test."""
    with tmpfs(tmp_path / "samples", FEW_INODES) as mount_point:
        yield mount_point


def _turned_off(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if TURNED_OFF in r.getMessage()]


def test_inodes_running_out_as_a_worker_serves_turn_its_metrics_off(
    few_inodes: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with as_process(300, few_inodes, monkeypatch):
        try:
            metrics.enable(0)
            assert metrics.enabled()
            made = {p.name for p in few_inodes.glob("*.db")}
            _take_every_inode(few_inodes)
            with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
                serve_a_while()  # old code: OSError out of the first call making a file
            assert not metrics.enabled()
        finally:
            metrics.disable()
    (said,) = _turned_off(caplog)
    assert said.endswith(f"the metrics sample directory {few_inodes} {FULL}"), said
    assert not list(few_inodes.glob("*.partial"))
    # What it recorded before stays readable.
    assert {p.name for p in few_inodes.glob("*.db")} <= made
    check_with_promtool(page_of(few_inodes))


# A worker's metrics in a process of its own, started with no inode left.
_WORKER = """
import logging
logging.basicConfig(level=logging.INFO)
from gateway import metrics
metrics.enable(0)
print("enabled", metrics.enabled(), flush=True)
from tests.gateway.sample_files import serve_a_while
serve_a_while()
print("served; metrics on:", metrics.enabled(), flush=True)
"""


def test_a_worker_started_with_no_inode_left_serves_with_its_metrics_off(
    few_inodes: Path,
) -> None:
    _take_every_inode(few_inodes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    env[metrics.MULTIPROC_ENV] = str(few_inodes)
    done = subprocess.run(
        [sys.executable, "-c", _WORKER], env=env, cwd=REPOSITORY, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # old code: 1, an OSError out of enable
    assert "enabled False" in done.stdout
    assert "served; metrics on: False" in done.stdout
    said = [line for line in done.stderr.splitlines() if TURNED_OFF in line]
    assert len(said) == 1, done.stderr
    assert said[0].startswith("ERROR") and FULL in said[0], said


def test_a_served_bank_whose_sample_filesystem_has_no_inode_left_answers(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "samples", FEW_INODES) as samples:
        bank = serve_bank(tmp_path, workers=2, extra_env={metrics.MULTIPROC_ENV: str(samples)})
        try:
            _bank_answers_with_no_inode_left(bank, samples)
        finally:
            bank.close()


def _bank_answers_with_no_inode_left(bank: ServedBank, samples: Path) -> None:
    _take_every_inode(samples)
    codes = set()
    # Channels of their own, so that the kernel hands calls to both workers; each one's
    # first Authorize makes its in-flight gauge's file.
    for _ in range(6):
        bank.channel()
        call = bank._channels[-1].unary_unary(
            "/setpay.v1.PaymentGatewayService/Authorize",
            request_serializer=lambda b: b, response_deserializer=lambda b: b,
        )  # fmt: skip
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                call(b"\xff\xff not an AuthorizeRequest", timeout=30)
            codes.add(refused.value.code())
    # Refused as a request that does not parse, never UNKNOWN (old code: every call).
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}, codes
    assert bank.process.poll() is None, bank.log()
    assert f"the metrics sample directory {samples} {FULL}" in bank.log()
    check_with_promtool(bank.scrape_text())


# --- what a tmpfs cannot make fail, injected ------------------------------------------


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A worker's file-backed samples in ``tmp_path`` (pid 300); metrics off after."""
    with as_process(300, tmp_path, monkeypatch):
        try:
            yield tmp_path
        finally:
            metrics.disable()


def test_a_sample_file_that_cannot_be_renamed_into_place_turns_metrics_off(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def replace(source: str, target: str) -> None:  # a quota, a directory's full block
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(metrics_files.os, "replace", replace)
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable(0)
        serve_a_while()
    assert not metrics.enabled()
    (said,) = _turned_off(caplog)
    assert said.endswith(f"{samples} is full (Disk quota exceeded)"), said
    assert list(samples.iterdir()) == []  # nothing half made


def test_a_sample_file_that_cannot_be_mapped_grown_turns_metrics_off(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.enable(0)
    serve_a_while()

    def no_memory(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr(mmap, "mmap", no_memory)  # the client's own mapping, grown
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        many_series()  # the counters' file grows: no exception (old code: OSError)
    assert not metrics.enabled()
    (said,) = _turned_off(caplog)
    assert said.endswith(f"{samples} cannot hold more samples (Cannot allocate memory)"), said
    assert ("setpay_worker_rpcs_total", frozenset({("worker", "0")})) in samples_of(
        page_of(samples)
    )
