"""The reservation of prometheus_client's sample files, proven where it is installed: a
value made as the client makes them must have a reserved file, or metrics refuse to
start. A client that looks its file class up otherwise than the shape check reads (an
import moved into MultiProcessValue) passed the check with the old code, which then
reserved nothing; and the refusal names the client versions verified, which
pyproject.toml requires.

The probe runs in a directory of its own inside the sample directory, never the system's
temporary one (a bank whose only writable directory is the sample directory's volume had
its metrics turned off, blamed on a directory it does not use); a probe directory left by a
process gone is removed by the next probe, and never scraped meanwhile; and the probe's
file is closed, on a client without ``close_all_files`` (before 0.26.0) too."""

from __future__ import annotations

import contextlib
import errno
import gc
import inspect
import logging
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from gateway import metrics, metrics_files

from .sample_files import as_process, page_of, serve_a_while
from .served import REPOSITORY

# How a probe directory's name begins (``metrics_files.PROBE_PREFIX``), written out: one
# left by an earlier release's process is named so.
PROBE_PREFIX = "setpay-probe-"
# What a probe's files have in their path, in this release and before it.
PROBE_PATH = "-probe-"


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A worker's file-backed samples in ``tmp_path``/samples (pid 300), the probe's
    temporary directories in ``tmp_path``/tmp; metrics off after."""
    directory, temporary = tmp_path / "samples", tmp_path / "tmp"
    directory.mkdir()
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with as_process(300, directory, monkeypatch):
        try:
            yield directory
        finally:
            metrics.disable()


def _imports_its_file_class_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's MultiProcessValue, its file class imported where it is used."""
    source = inspect.getsource(values.MultiProcessValue)
    changed = source.replace(
        "    files = {}\n",
        "    from prometheus_client.mmap_dict import MmapedDict\n    files = {}\n",
        1,
    )
    assert changed != source
    namespace: dict[str, Any] = dict(vars(values))
    exec(compile(changed, values.__file__, "exec"), namespace)  # the client's own, changed
    monkeypatch.setattr(values, "MultiProcessValue", namespace["MultiProcessValue"])


def _keeps_values_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    def multi_process_value(process_identifier: Any = os.getpid) -> Any:
        values.MmapedDict  # noqa: B018 - looked up, as the shape check reads
        return values.MutexValue

    monkeypatch.setattr(values, "MultiProcessValue", multi_process_value)


def _makes_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    def multi_process_value() -> Any:
        return values.MmapedDict

    monkeypatch.setattr(values, "MultiProcessValue", multi_process_value)


@pytest.mark.parametrize(
    ("change", "told"),
    [
        (_imports_its_file_class_inside, "values.MultiProcessValue made its file as MmapedDict"),
        (_keeps_values_in_memory, "values.MultiProcessValue made its file as NoneType"),
        (_makes_no_value, "values.MultiProcessValue made no value: TypeError"),
    ],
)
def test_a_client_whose_values_are_not_reserved_is_refused_at_start(
    samples: Path, monkeypatch: pytest.MonkeyPatch, change: Any, told: str
) -> None:
    change(monkeypatch)
    before = values.MmapedDict
    with pytest.raises(metrics.MetricsError) as refused:
        metrics.enable(0)  # old code: no refusal, and the files it then made were sparse
    assert f"({told}" in str(refused.value), refused.value
    assert not metrics.enabled()
    assert values.MmapedDict is before  # nothing installed
    assert os.environ[metrics.MULTIPROC_ENV] == str(samples)
    assert list(samples.iterdir()) == []
    assert list(Path(tempfile.gettempdir()).iterdir()) == []  # the probe left nothing


def test_the_refusal_names_the_versions_verified_which_pyproject_requires(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _imports_its_file_class_inside(monkeypatch)
    with pytest.raises(metrics.MetricsError) as refused:
        metrics.enable(0)
    assert str(refused.value).endswith(
        "install prometheus-client>=0.21,<=0.26.0 (verified with 0.21.0, 0.21.1, 0.22.1, "
        "0.23.1, 0.24.1, 0.25.0, 0.26.0)"
    ), refused.value
    with (REPOSITORY / "pyproject.toml").open("rb") as f:
        required = tomllib.load(f)["project"]["dependencies"]
    assert getattr(metrics_files, "CLIENT_REQUIREMENT", None) in required, required


def test_the_client_as_installed_passes_the_probe_which_leaves_nothing(samples: Path) -> None:
    metrics.enable(0)
    assert metrics.enabled()
    assert values.MmapedDict.__name__ == "ReservedSamples"
    assert os.environ[metrics.MULTIPROC_ENV] == str(samples)
    assert not [p for p in samples.iterdir() if "probe" in p.name]
    assert list(Path(tempfile.gettempdir()).iterdir()) == []


def test_a_probe_without_a_temporary_directory_turns_metrics_off(
    samples: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Said naming the directory the probe could not be made in: the sample directory.

    Before: the system's temporary directory, named as if it were the sample directory."""

    def mkdtemp(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    before = values.MmapedDict
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable(0)  # no refusal: the worker starts, its metrics off
    assert not metrics.enabled()
    said = [r.getMessage() for r in caplog.records if "metrics turned off" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(
        f"the metrics sample directory {samples} is full (No space left on device)"
    ), said
    assert values.MmapedDict is before  # not proven: not installed
    assert list(samples.iterdir()) == []
    assert os.environ[metrics.MULTIPROC_ENV] == str(samples)


def test_the_probe_runs_in_the_sample_directory_where_the_temporary_one_is_not_writable(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only root (``docker run --read-only``), the samples on a volume: metrics on.

    Before: the probe's directory could not be made in the system's temporary directory,
    and metrics were off in every process."""
    unwritable = tmp_path / "not-a-directory"
    unwritable.write_bytes(b"")  # no directory can be made in it, even by root
    monkeypatch.setattr(tempfile, "tempdir", str(unwritable))
    metrics.enable(0)
    assert metrics.enabled()
    assert values.MmapedDict.__name__ == "ReservedSamples"
    serve_a_while()
    names = [p.name for p in samples.iterdir()]
    assert "counter_300.db" in names and not [n for n in names if "probe" in n], names


def test_without_a_sample_directory_there_is_nothing_to_reserve(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    before = values.MmapedDict
    with pytest.raises(metrics.MetricsError, match="PROMETHEUS_MULTIPROC_DIR is not set"):
        metrics_files.reserve_sample_files()
    assert values.MmapedDict is before
    assert metrics.MULTIPROC_ENV not in os.environ
    assert list(Path(tempfile.gettempdir()).iterdir()) == []


def _left_probe(samples: Path, name: str) -> Path:
    """A probe directory as a process killed mid-probe leaves it: a counter's file in it."""
    directory = samples / name
    directory.mkdir()
    left = MmapedDict(str(directory / "counter_probe.db"))  # type: ignore[no-untyped-call]
    key = mmap_key("probe", "probe_total", [], [], "probe")
    left.write_value(key, 1.0, 0.0)  # type: ignore[no-untyped-call]
    left.close()  # type: ignore[no-untyped-call]
    return directory


def _pid_gone() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_probe_left_by_a_process_gone_is_never_scraped_and_the_next_probe_removes_it(
    samples: Path,
) -> None:
    """Before: the probe was never in the sample directory; now a worker killed mid-probe
    leaves its directory there. The collector reads no subdirectory, the fold only files
    named for a pid: neither sees it; the next probe removes it, not a running process's.
    """
    gone = _left_probe(samples, f"{PROBE_PREFIX}{_pid_gone()}-left")
    mine = _left_probe(samples, f"{PROBE_PREFIX}{os.getpid()}-left")  # an earlier process's
    running = _left_probe(samples, f"{PROBE_PREFIX}1-left")  # a process running: probing
    others = [samples / f"{PROBE_PREFIX}x-left", samples / "probe-1-left"]
    for other in others:
        other.mkdir()
    assert "probe" not in page_of(samples)

    metrics.enable(0)
    assert metrics.enabled()
    assert not gone.exists() and not mine.exists()
    assert running.exists() and all(other.exists() for other in others)  # not ours to remove
    serve_a_while()
    metrics.disable()
    metrics_files.fold_process_gone(samples, 300)
    assert (samples / "counter_gone.db").exists()
    page = page_of(samples)
    assert "setpay_" in page and "probe" not in page


def _without_close_all_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's values as 0.21.0 to 0.25.0 make them: no ``close_all_files``."""
    real = values.MultiProcessValue

    def multi_process_value(process_identifier: Any = os.getpid) -> Any:
        values.MmapedDict  # noqa: B018 - looked up, as the shape check reads
        made = real(process_identifier=process_identifier)
        with contextlib.suppress(AttributeError):
            del made.close_all_files
        return made

    monkeypatch.setattr(values, "MultiProcessValue", multi_process_value)


def _probe_still_open() -> list[str]:
    """What of a probe this process still has open or mapped."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
    held += Path("/proc/self/maps").read_text().splitlines()
    return [line for line in held if PROBE_PATH in line]


@pytest.mark.parametrize("client", ["as installed", "without close_all_files"])
def test_the_probe_leaves_nothing_of_its_own_open(
    samples: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """Before, on a client older than 0.26.0 (no ``close_all_files``, its AttributeError
    suppressed): the probe's file stayed open and mapped, its directory removed, for the
    process's life. The garbage collector is off: the client's values and classes are a
    reference cycle it would close at some time; only the probe's own closing is measured."""
    if client != "as installed":
        _without_close_all_files(monkeypatch)
    gc.disable()
    try:
        metrics_files.reserve_sample_files()
        assert values.MmapedDict.__name__ == "ReservedSamples"
        assert _probe_still_open() == []
    finally:
        gc.enable()
    assert [p.name for p in samples.iterdir()] == []
