"""prometheus_client's file-backed samples inside this test process, as a worker's.

The test process imported the client without PROMETHEUS_MULTIPROC_DIR, so its metrics
live in memory; ``as_process`` makes the metrics made from then on write their samples to
files of the directory, under a pid of the test's choosing (several processes' files, one
after the other, without forking), as a served bank's processes do. The bank's own code
sees that pid too (``os.getpid``), as in a served bank: what a process does to its own
files (its live gauges' at a full disk) it does to those the client named for it.
``tmpfs`` and ``ext3`` mount the filesystems the tests put them on (root needed, as the CI
has: where they cannot be mounted, the test fails, it is not skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
# An ext3 filesystem's size: room for its journal and a few processes' files.
EXT3_BYTES = 16 << 20
# Mounting, making a filesystem, detaching a loop device: seconds at most; this bounds a hang.
MOUNT_SECONDS = 60


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_SECONDS, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot {what} (needs root): {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A tmpfs with ``options`` (``size=512k``, ``nr_inodes=32``) at ``mount_point``, made;
    unmounted on leaving."""
    mount_point.mkdir()
    _run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], "mount a tmpfs")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True, timeout=MOUNT_SECONDS)


@contextmanager
def ext3(mount_point: Path, image: Path) -> Iterator[Path]:
    """An ext3 filesystem of EXT3_BYTES made in ``image`` and mounted through a loop device
    at ``mount_point``: a filesystem the kernel has no fallocate for. Unmounted and its
    loop device detached on leaving."""
    if shutil.which("mkfs.ext3") is None:
        pytest.fail("mkfs.ext3 is not installed (Debian package e2fsprogs)")
    with image.open("wb") as f:
        f.truncate(EXT3_BYTES)
    _run(["mkfs.ext3", "-q", "-F", str(image)], "make an ext3 filesystem")
    device = _run(["losetup", "--find", "--show", str(image)], "attach a loop device")
    try:
        mount_point.mkdir()
        _run(["mount", "-t", "ext3", device, str(mount_point)], "mount an ext3 filesystem")
        try:
            yield mount_point
        finally:
            if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(mount_point)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=False, timeout=MOUNT_SECONDS)


@contextmanager
def as_process(pid: int, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Metrics made within write to ``directory``'s files of ``pid``, which is this
    process's pid (``os.getpid``) until the test ends; closed on leaving."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    monkeypatch.setattr(os, "getpid", lambda: pid)
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
