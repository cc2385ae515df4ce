"""The reservation of prometheus_client's sample files, proven where it is installed: a
value made as the client makes them must have a reserved file, or metrics refuse to
start. A client that looks its file class up otherwise than the shape check reads (an
import moved into MultiProcessValue) passed the check with the old code, which then
reserved nothing; and the refusal names the client versions verified, which
pyproject.toml requires."""

from __future__ import annotations

import errno
import inspect
import logging
import os
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import values

from gateway import metrics, metrics_files

from .sample_files import as_process
from .served import REPOSITORY


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
        "install prometheus-client>=0.21,<=0.26.0 (verified with 0.26.0)"
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
    def mkdtemp(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    before = values.MmapedDict
    with caplog.at_level(logging.ERROR, logger="setpay.metrics"):
        metrics.enable(0)  # no refusal: the worker starts, its metrics off
    assert not metrics.enabled()
    said = [r.getMessage() for r in caplog.records if "metrics turned off" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("is full (No space left on device)"), said
    assert values.MmapedDict is before  # not proven: not installed
    assert list(samples.iterdir()) == []
