"""Prometheus metrics on a full disk: a process whose sample files cannot have their disk
blocks turns its metrics off, says so in one ERROR line and goes on serving, where it
used to die of SIGBUS; and a prometheus_client whose files can no longer be reserved is
refused at start. On a real small tmpfs (mounting one needs root, as the CI has: where it
cannot, the tests fail) and with the reservation's failure injected."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import mmap_dict, values

from gateway import metrics, metrics_files
from tests.metrics_page import check_with_promtool

from .sample_files import as_process, many_series, page_of, samples_of, serve_a_while, tmpfs
from .served import REPOSITORY, serve_bank, wait_for, workers_of

# Room for a worker's first files (64 KiB each), which a test then fills.
SMALL_FILESYSTEM = "512k"
# Room for a served bank's: the supervisor's and two workers' first files.
BANK_FILESYSTEM = "2m"
TURNED_OFF = "metrics turned off in this process"


def _fill(directory: Path) -> None:
    """Take every free block of ``directory``'s filesystem, as another program would."""
    fd = os.open(directory / "other-program.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 512):  # then what a large write could not take
            with pytest.raises(OSError) as full:
                while True:
                    os.write(fd, bytes(chunk))
            assert full.value.errno == errno.ENOSPC, full.value
    finally:
        os.close(fd)


@contextmanager
def _mounted(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount_point``, unmounted on leaving."""
    with tmpfs(mount_point, f"size={size}"):
        yield mount_point


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SMALL_FILESYSTEM, unmounted after the test."""
    with _mounted(tmp_path / "samples", SMALL_FILESYSTEM) as mount_point:
        yield mount_point


# A worker's metrics in a process of their own: on a full disk the old code died here.
_WORKER = """
import logging, os, sys
logging.basicConfig(level=logging.INFO)
from gateway import metrics
metrics.enable(0)
print("enabled", metrics.enabled(), flush=True)
if sys.argv[1] == "fill-then-serve":  # what another program would do
    fd = os.open(os.environ["PROMETHEUS_MULTIPROC_DIR"] + "/other-program.log",
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for chunk in (65536, 512):
        try:
            while True:
                os.write(fd, bytes(chunk))
        except OSError:
            pass
    os.close(fd)
from tests.gateway.sample_files import many_series
many_series()
print("served; metrics on:", metrics.enabled(), flush=True)
"""


def _run_worker(samples: Path, how: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    env[metrics.MULTIPROC_ENV] = str(samples)
    return subprocess.run(
        [sys.executable, "-c", _WORKER, how], env=env, cwd=REPOSITORY, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def _one_error_line(log: str, directory: Path) -> None:
    said = [line for line in log.splitlines() if TURNED_OFF in line]
    assert len(said) == 1, log
    assert said[0].startswith("ERROR"), said
    assert f"the metrics sample directory {directory} is full" in said[0], said


def test_a_worker_started_on_a_full_filesystem_serves_with_its_metrics_off(
    small_filesystem: Path,
) -> None:
    _fill(small_filesystem)
    done = _run_worker(small_filesystem, "serve")
    assert done.returncode == 0, (done.returncode, done.stderr)  # old code: -SIGBUS
    assert "enabled False" in done.stdout
    assert "served; metrics on: False" in done.stdout
    _one_error_line(done.stderr, small_filesystem)
    # Nothing half made is left for the supervisor's scrape to choke on.
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["other-program.log"]


def test_a_filesystem_filling_as_a_worker_serves_turns_its_metrics_off(
    small_filesystem: Path,
) -> None:
    done = _run_worker(small_filesystem, "fill-then-serve")
    assert done.returncode == 0, (done.returncode, done.stderr)  # old code: -SIGBUS
    assert "enabled True" in done.stdout
    assert "served; metrics on: False" in done.stdout
    _one_error_line(done.stderr, small_filesystem)
    # What it recorded before stays readable: the supervisor serves it.
    page = page_of(small_filesystem)
    check_with_promtool(page)
    assert ("setpay_worker_rpcs_total", frozenset({("worker", "0")})) in samples_of(page)


def test_a_served_bank_whose_sample_filesystem_fills_goes_on_serving(tmp_path: Path) -> None:
    with _mounted(tmp_path / "samples", BANK_FILESYSTEM) as samples:
        _a_bank_fills_its_samples(tmp_path, samples)


def _a_bank_fills_its_samples(tmp_path: Path, samples: Path) -> None:
    bank = serve_bank(tmp_path, workers=2, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(samples)})
    try:
        _fill(samples)
        # A worker dies (of anything): its replacement starts on the full disk, where the
        # old code's died of SIGBUS in metrics.enable and the supervisor stopped the bank.
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)
        wait_for("replaced", lambda: bank.log().count(" serving (pid ") == 3)
        assert bank.process.poll() is None, bank.log()
        assert "SIGBUS" not in bank.log()
        assert f"the metrics sample directory {samples} is full" in bank.log()
        check_with_promtool(bank.scrape_text())
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()


# --- the reservation's failure injected, in this process ------------------------------


def _failing(error: int) -> Callable[[int, bytes, int], int]:
    """A pwrite that fails with ``error``: how a reservation learns its disk is full."""

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(error, os.strerror(error))

    return pwrite


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A worker's file-backed samples in ``tmp_path`` (pid 300); metrics off after."""
    with as_process(300, tmp_path, monkeypatch):
        try:
            yield tmp_path
        finally:
            metrics.disable()


def _turned_off(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if TURNED_OFF in r.getMessage()]


def test_enable_on_a_full_disk_leaves_metrics_off_and_no_file_half_made(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics_files.os, "pwrite", _failing(errno.ENOSPC))
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable(0)  # no exception: the worker goes on starting
        serve_a_while()
    assert not metrics.enabled()
    assert _turned_off(caplog) == [
        f"metrics turned off in this process (pid {os.getpid()}), which goes on serving: "
        f"the metrics sample directory {samples} is full (No space left on device)"
    ]
    assert list(samples.iterdir()) == []


def test_a_full_disk_at_a_new_series_turns_metrics_off_once(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.enable(0)
    serve_a_while()
    counters = (samples / "counter_300.db").stat().st_size
    monkeypatch.setattr(metrics_files.os, "pwrite", _failing(errno.ENOSPC))
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        many_series()  # more than the first file holds
    assert not metrics.enabled()
    assert len(_turned_off(caplog)) == 1
    # The file was never grown past what was reserved.
    assert (samples / "counter_300.db").stat().st_size == counters


def test_a_full_disk_at_the_samplers_first_gauge_turns_every_metric_off(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.enable(0)
    trust = SimpleNamespace(counters=SimpleNamespace(cache_hits=0, verifications=0))
    revocation = SimpleNamespace(
        counters=SimpleNamespace(publish_failures=0, install_failures=0),
        held_until=lambda: None,
    )
    sampler = metrics.Sampler(trust, object(), revocation)  # type: ignore[arg-type]
    monkeypatch.setattr(metrics_files.os, "pwrite", _failing(errno.ENOSPC))
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        sampler.sample()  # its gauge of the revocation data's end makes a new file
        sampler.sample()
    assert not metrics.enabled()
    assert len(_turned_off(caplog)) == 1
    assert not list(samples.glob("gauge_livemin_*"))


def _reservations_fail(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reservation from now on fails as on a full disk, whatever it reserves."""

    def full(*args: object) -> None:
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise metrics_files.SampleSpaceError(str(directory / "counter_300.db"), error)

    monkeypatch.setattr(metrics_files, "_reserve", full)


def test_metrics_turned_off_take_this_processs_live_gauges_off_the_page(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics.enable(0)
    metrics.rpc_started("Authorize")  # a call in flight as the disk fills
    metrics.tls_certificate_valid_until(2e9)
    # Another process's live gauges, which are not this one's to take off.
    (samples / "gauge_livesum_301.db").write_bytes((samples / "gauge_livesum_300.db").read_bytes())
    _reservations_fail(samples, monkeypatch)
    many_series()  # the counters' file must grow
    metrics.rpc_finished("setpay.v1.PaymentGatewayService", "Authorize", 0.01, None)
    assert not metrics.enabled()
    # Frozen, they would say a call is in flight for ever (old code: they stayed).
    assert sorted(p.name for p in samples.glob("gauge_live*")) == ["gauge_livesum_301.db"]
    totals = samples_of(page_of(samples))
    assert not [s for s in totals if s[0] == "setpay_tls_certificate_valid_until_seconds"]
    in_flight = [v for s, v in totals.items() if s[0] == "setpay_rpc_in_flight"]
    assert in_flight == [1.0]  # process 301's, as it was copied
    # What it counted stays counted.
    assert ("setpay_worker_rpcs_total", frozenset({("worker", "0")})) in totals


def test_a_reservation_failing_otherwise_is_told_as_it_is(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics_files.os, "pwrite", _failing(errno.EIO))
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable(0)
    assert not metrics.enabled()
    (said,) = _turned_off(caplog)
    assert said.endswith(f"{samples} cannot hold more samples (Input/output error)"), said


def test_a_supervisor_on_a_full_disk_turns_its_own_metrics_off_and_goes_on(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics_files.os, "pwrite", _failing(errno.ENOSPC))
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable_supervisor(2)
        metrics.worker_restarted(2)
        metrics.worker_gone(12_345, 1)
    assert len(_turned_off(caplog)) == 1
    assert list(samples.iterdir()) == []


def test_samples_on_a_disk_with_room_are_reserved_to_their_full_size(
    small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with as_process(300, small_filesystem, monkeypatch):
        try:
            metrics.enable(0)
            serve_a_while()
            many_series()  # the counters' file grows past its first size
            assert metrics.enabled()
        finally:
            metrics.disable()
    files = list(small_filesystem.glob("*.db"))
    assert (small_filesystem / "counter_300.db").stat().st_size > metrics_files.FIRST_FILE_BYTES
    for f in files:
        # Blocks of 512 bytes: all of the file is on disk, none of it a hole.
        assert f.stat().st_blocks * 512 >= f.stat().st_size, f.name


# --- a prometheus_client of another shape ---------------------------------------------


def _another_file_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "MmapedDict", type("Elsewhere", (), {}))


def _files_made_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    def multi_process_value(process_identifier: Any = os.getpid) -> Any:
        return values.MutexValue

    monkeypatch.setattr(values, "MultiProcessValue", multi_process_value)


def _growth_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mmap_dict.MmapedDict, "_init_value")


def _made_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(self: Any, filename: str, read_mode: bool = False, size: int = 0) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(mmap_dict.MmapedDict, "__init__", init)


@pytest.mark.parametrize(
    ("change", "told"),
    [
        (_another_file_class, "values.MmapedDict is not mmap_dict.MmapedDict"),
        (_files_made_elsewhere, "values.MultiProcessValue no longer makes its files"),
        (_growth_renamed, r"MmapedDict._init_value is not \(key\)"),
        (_made_otherwise, r"MmapedDict.__init__ is not \(filename, read_mode\)"),
    ],
)
def test_a_client_of_another_shape_is_refused_at_start(
    samples: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[pytest.MonkeyPatch], None],
    told: str,
) -> None:
    change(monkeypatch)
    before = values.MmapedDict
    with pytest.raises(metrics.MetricsError, match=f"prometheus_client .* has changed \\({told}"):
        metrics.enable(0)
    assert not metrics.enabled()
    assert values.MmapedDict is before  # nothing installed
    with pytest.raises(metrics.MetricsError, match="full disk would kill"):
        metrics.enable_supervisor(2)


def test_a_client_whose_files_lack_what_the_reservation_reads_is_refused_at_start(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = mmap_dict.MmapedDict.__init__

    def init(self: Any, filename: str, read_mode: bool = False) -> None:
        made(self, filename, read_mode)
        del self._capacity

    monkeypatch.setattr(mmap_dict.MmapedDict, "__init__", init)
    with pytest.raises(metrics.MetricsError, match="its sample files have no _capacity"):
        metrics.enable(0)
    assert not metrics.enabled()
