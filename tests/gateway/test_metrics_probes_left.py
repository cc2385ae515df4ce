"""The probe of prometheus_client's sample files (``metrics_files.reserve_sample_files``):
the directories it leaves when its process is killed mid-probe, removed with the sample
directory at a bank's stop and from a configured one at its start, where the old code's
stop raised IsADirectoryError; and a process that has the reservation installed, as a
forked worker inherits it from the supervisor, does not probe again."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import values

from gateway import metrics, metrics_files, scrape
from gateway.scrape import MultiprocessDirectory, prepare_multiprocess_directory

from .sample_files import as_process

# How a probe directory's name begins (``metrics_files.PROBE_PREFIX``), written out.
PROBE_PREFIX = "setpay-probe-"


def _left_probe(samples: Path, pid: int) -> Path:
    """A probe directory as a process killed mid-probe leaves it: a file in it."""
    directory = samples / f"{PROBE_PREFIX}{pid}-left"
    directory.mkdir()
    (directory / "counter_probe.db").write_bytes(bytes(64))
    return directory


def test_a_bank_stopping_removes_the_probe_directory_a_worker_killed_mid_probe_left(
    tmp_path: Path,
) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "counter_300.db").write_bytes(bytes(64))
    _left_probe(samples, 300)
    (samples / f"{PROBE_PREFIX}301-file").write_bytes(b"")  # a file so named: a file
    MultiprocessDirectory(samples, owned=True).remove()  # old code: IsADirectoryError
    assert not samples.exists()


def test_a_bank_stopping_leaves_a_directory_it_did_not_make_as_it_is(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    probe = _left_probe(samples, 300)
    MultiprocessDirectory(samples, owned=False).remove()
    assert (probe / "counter_probe.db").exists()


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sample directory the operator set, with a client imported as a served bank's."""
    samples = tmp_path / "samples"
    samples.mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(samples))
    monkeypatch.setattr(scrape, "client_is_multiprocess", lambda: True)
    return samples


def test_a_bank_starting_removes_the_probe_directories_left_in_a_configured_directory(
    configured: Path,
) -> None:
    left = [_left_probe(configured, 300), _left_probe(configured, os.getpid())]
    (configured / "counter_300.db").write_bytes(bytes(64))
    directory = prepare_multiprocess_directory()
    assert directory == MultiprocessDirectory(configured, owned=False)
    assert not any(probe.exists() for probe in left)
    assert list(configured.iterdir()) == []


def test_a_bank_starting_leaves_what_is_no_probe_directory(
    configured: Path, tmp_path: Path
) -> None:
    """The operator's own directory, and a link named as a probe's: its target is kept."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("kept")
    (configured / f"{PROBE_PREFIX}302-link").symlink_to(outside, target_is_directory=True)
    (configured / "operator").mkdir()
    prepare_multiprocess_directory()
    assert sorted(p.name for p in configured.iterdir()) == ["operator", f"{PROBE_PREFIX}302-link"]
    assert (outside / "kept").read_text() == "kept"


class _Probes:
    """The sample directories probed, and how many probes from now on are to fail (as
    where the probe's directory cannot be made)."""

    def __init__(self) -> None:
        self.probed: list[str] = []
        self.failing = 0


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Probes]:
    """The probes from now on, in this process as pid 300's, sampling to ``tmp_path``."""
    probes = _Probes()
    real = metrics_files._probe

    def probe(factory: Any, samples: str) -> None:
        probes.probed.append(samples)
        if probes.failing:
            probes.failing -= 1
            error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise metrics_files.SampleSpaceError(os.path.join(samples, PROBE_PREFIX), error)
        real(factory, samples)

    monkeypatch.setattr(metrics_files, "_probe", probe)
    with as_process(300, tmp_path, monkeypatch):
        yield probes


def test_a_process_with_the_reservation_installed_does_not_probe_again(
    probes: _Probes, tmp_path: Path
) -> None:
    """As a worker forked by the supervisor, which installed and probed it: before, every
    worker and the ledger process probed again at its start."""
    metrics_files.reserve_sample_files()
    assert probes.probed == [str(tmp_path)]
    metrics_files.reserve_sample_files()
    assert probes.probed == [str(tmp_path)]  # old code: probed twice
    assert values.MmapedDict.__name__ == "ReservedSamples"


def test_a_process_whose_probe_failed_probes_again(probes: _Probes, tmp_path: Path) -> None:
    """A failed probe installs nothing: the next call checks it all again."""
    before = values.MmapedDict
    probes.failing = 1
    with pytest.raises(metrics_files.SampleSpaceError, match="is full"):
        metrics_files.reserve_sample_files()
    assert values.MmapedDict is before
    metrics_files.reserve_sample_files()
    assert probes.probed == [str(tmp_path)] * 2
    assert values.MmapedDict.__name__ == "ReservedSamples"


def test_a_process_with_the_reservation_installed_still_needs_a_sample_directory(
    probes: _Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_files.reserve_sample_files()
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    with pytest.raises(metrics_files.MetricsError, match="PROMETHEUS_MULTIPROC_DIR is not set"):
        metrics_files.reserve_sample_files()
    assert len(probes.probed) == 1
