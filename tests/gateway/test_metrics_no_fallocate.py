"""Prometheus sample files on a filesystem the kernel has no fallocate for (ext3, older
NFS, many FUSE filesystems): their blocks are reserved all the same, by writing them, so
metrics stay on and the files of the processes gone are folded. The old code reserved
with posix_fallocate on the client's own descriptor, opened to append, which glibc's
fallback refuses (EBADF): metrics were always off there, and every fold failed. On a
real ext3 filesystem on a loop device (root needed, as the CI has: where it cannot be
made, the tests fail) and with fallocate's refusal injected."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import metrics, metrics_sampler
from tests.metrics_page import check_with_promtool

from .sample_files import as_process, ext3, many_series, page_of, samples_of, serve_a_while

SUPERVISOR, WORKER = 100, 1_000


@pytest.fixture
def no_fallocate(tmp_path: Path) -> Iterator[Path]:
    """A sample directory on ext3, where a descriptor opened to append cannot be
    fallocated (what made the old code's metrics always off there)."""
    with ext3(tmp_path / "samples", tmp_path / "ext3.img") as directory:
        fd = os.open(directory / "probe", os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            with pytest.raises(OSError) as refused:
                os.posix_fallocate(fd, 0, 4096)
            assert refused.value.errno == errno.EBADF, refused.value
        finally:
            os.close(fd)
            os.unlink(directory / "probe")
        yield directory


def _all_on_disk(directory: Path) -> None:
    for f in directory.glob("*.db"):
        # Blocks of 512 bytes: all of the file is on disk, none of it a hole.
        assert f.stat().st_blocks * 512 >= f.stat().st_size, f.name


def test_a_worker_on_ext3_keeps_its_metrics_on_and_its_files_reserved(
    no_fallocate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with as_process(WORKER, no_fallocate, monkeypatch):
        try:
            metrics.enable(0)
            serve_a_while()
            many_series()  # the counters' file grows past its first size
            assert metrics.enabled()  # old code: off from enable on (Bad file descriptor)
        finally:
            metrics.disable()
    assert (no_fallocate / f"counter_{WORKER}.db").stat().st_size > (1 << 16)
    _all_on_disk(no_fallocate)


def test_the_files_of_a_process_gone_on_ext3_are_folded(
    no_fallocate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with as_process(SUPERVISOR, no_fallocate, monkeypatch):
        try:
            metrics.enable_supervisor(2)
            with as_process(WORKER, no_fallocate, monkeypatch):
                metrics.enable(0)
                serve_a_while()
                metrics_sampler.disable()
            before = samples_of(page_of(no_fallocate))
            metrics.worker_gone(WORKER, 1)
        finally:
            metrics.disable()
    names = {p.name for p in no_fallocate.iterdir()}
    # Old code: the worker's files stayed, beside a counter_gone.db.partial.
    assert {"counter_gone.db", "histogram_gone.db"} <= names, names
    assert not [n for n in names if n.endswith(f"_{WORKER}.db") or n.endswith(".partial")]
    after = samples_of(page_of(no_fallocate))
    labels = frozenset({("service", "setpay.v1.PaymentGatewayService"), ("method", "Authorize")})
    requests = ("setpay_rpc_requests_total", labels)
    assert after[requests] == before[requests] > 0
    check_with_promtool(page_of(no_fallocate))
    _all_on_disk(no_fallocate)


def test_samples_are_reserved_where_fallocate_refuses_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What glibc's fallback answers for a descriptor opened to append, on any filesystem.
    def refused(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(os, "posix_fallocate", refused)
    with as_process(WORKER, tmp_path, monkeypatch):
        try:
            metrics.enable(0)
            serve_a_while()
            many_series()
            assert metrics.enabled()  # old code: off from enable on
        finally:
            metrics.disable()
    _all_on_disk(tmp_path)
