"""The sample files of the bank's processes: their disk blocks reserved, a full disk turned
into metrics off, and the files of the processes gone folded into one per type.

A full disk. prometheus_client keeps each process's samples in files it maps into memory
(its ``MmapedDict``): it makes a file of 64 KiB, doubled as series are added, by
truncating it, which gives the file a size but no disk blocks, and writes through the
mapping. On a full filesystem the first write to such a page is no exception but SIGBUS:
a serving worker died of it at its next new series, its replacement in
``gateway.metrics.enable``, and the supervisor stopped the bank. So
``reserve_sample_files`` puts ``ReservedSamples`` where the client looks its file class up:
it reserves a file's blocks (``os.posix_fallocate``) when the file is made and before it
grows, and a full disk becomes ``SampleSpaceError``. The serving functions turn that into
metrics off in their process (``until_full``, ``samples_full``), said in one ERROR line;
the process goes on serving. The client's internals are no interface, and pyproject asks
for a range of versions: ``reserve_sample_files`` checks the shape it relies on and
refuses to start (``MetricsError``) where it changed, rather than reserve nothing.

The processes gone. A dead worker's counters' and histograms' files must stay counted,
or the totals would step back; but every file costs every scrape a read, and a worker
that crashes in a loop leaves thousands, until every scrape outlives its time.
``fold_process_gone`` adds a dead process's files into the directory's file of the
processes gone for their type (``counter_gone.db``: the client reads a file's type from
its name's first part) and deletes them: the totals stay, the directory stays small.

Errors: ``MetricsError`` (metrics cannot be turned on as configured), ``SampleSpaceError``
(a sample file's blocks could not be reserved: its filesystem is full).
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
import threading
import types
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec

log = logging.getLogger("setpay.metrics")

P = ParamSpec("P")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A file is made and reserved under this suffix, then renamed into place: the collector
# (which reads ``*.db``) never sees a file of no size, which it cannot parse, and a failed
# reservation leaves nothing under a name it reads.
PARTIAL_SUFFIX = ".partial"
# The name part, in place of a pid, of the files of the processes gone.
GONE = "gone"
# A new sample file's size: the client's own first size (it keeps a file's size as it
# finds it, and doubles it from there).
FIRST_FILE_BYTES = 1 << 16
# The file types that outlive their process. Live gauges' files go with it
# (``mark_process_dead``), and the bank has no other gauges.
_FOLDED_TYPES = ("counter", "histogram", "summary")
# A key's entry in a sample file, beyond the key itself, at most: its 4-byte length, 1 to
# 8 bytes of padding to an 8-byte boundary, the value and its timestamp (two doubles).
_ENTRY_BYTES = 4 + 8 + 16
# What of the client's MmapedDict the reservation relies on.
_SIGNATURES = {"__init__": ["self", "filename", "read_mode"], "_init_value": ["self", "key"]}
_ATTRIBUTES = ("_f", "_fname", "_capacity", "_used")


class MetricsError(Exception):
    """Metrics cannot be turned on as configured (the exporter would lose samples)."""


class SampleSpaceError(Exception):
    """A sample file's disk blocks could not be reserved (its filesystem is full)."""

    def __init__(self, filename: str, error: OSError) -> None:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        state = "is full" if full else "cannot hold more samples"
        directory = os.path.dirname(filename)
        super().__init__(f"the metrics sample directory {directory} {state} ({error.strerror})")


def _reserve(fd: int, size: int, filename: str) -> None:
    """Reserve the first ``size`` bytes of ``filename`` (open as ``fd``) on disk."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        raise SampleSpaceError(filename, exc) from exc


def _make_reserved(filename: str) -> None:
    """Reserve what ``filename`` holds; make it, reserved, if it is missing or empty."""
    try:
        size = os.stat(filename).st_size
    except FileNotFoundError:
        size = 0
    if size:  # left by an earlier process of this pid, whose files were not folded
        fd = os.open(filename, os.O_RDWR | os.O_CLOEXEC)
        try:
            _reserve(fd, size, filename)
        finally:
            os.close(fd)
        return
    partial = filename + PARTIAL_SUFFIX
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        _reserve(fd, FIRST_FILE_BYTES, filename)
    except BaseException:
        os.close(fd)
        os.unlink(partial)
        raise
    os.close(fd)
    os.replace(partial, filename)


@functools.cache
def _reserved_samples() -> type[Any]:
    """The client's sample file class, its blocks reserved (made on first use: importing
    the client must wait for PROMETHEUS_MULTIPROC_DIR, see ``gateway.metrics``)."""
    from prometheus_client.mmap_dict import MmapedDict  # noqa: PLC0415 - as above

    class ReservedSamples(MmapedDict):
        """A sample file whose disk blocks are reserved before they are written."""

        def __init__(self, filename: str, read_mode: bool = False) -> None:
            if not read_mode:
                _make_reserved(filename)
            super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]
            missing = [name for name in _ATTRIBUTES if not hasattr(self, name)]
            if missing:
                self.close()  # type: ignore[no-untyped-call]
                raise _changed(f"its sample files have no {', '.join(missing)}")
            if not read_mode:  # all it maps, should it size a new file otherwise
                try:
                    _reserve(self._f.fileno(), self._capacity, filename)
                except SampleSpaceError:
                    self.close()  # type: ignore[no-untyped-call]
                    raise

        def _init_value(self, key: str) -> None:
            # The client grows the file (doubling it) when the new entry does not fit, then
            # writes it: reserve the grown size first, reckoned with the entry's most bytes.
            needed = self._used + len(key.encode("utf-8")) + _ENTRY_BYTES
            capacity = self._capacity
            while needed > capacity:
                capacity *= 2
            if capacity > self._capacity:
                _reserve(self._f.fileno(), capacity, self._fname)
            super()._init_value(key)  # type: ignore[no-untyped-call]

    return ReservedSamples


def _changed(what: str) -> MetricsError:
    try:
        version = metadata.version("prometheus-client")
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return MetricsError(
        f"prometheus_client {version} has changed ({what}): its sample files cannot be "
        "reserved on disk, and a full disk would kill the bank's processes (SIGBUS); "
        "install a version of the range pyproject.toml names"
    )


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` and the functions and classes within it look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def reserve_sample_files() -> None:
    """Have prometheus_client reserve its sample files' blocks from now on, in this process.

    Raises ``MetricsError`` if the client no longer has the shape this relies on: where
    its file-backed values look up their file class, and that class's methods.
    """
    from prometheus_client import mmap_dict, values  # noqa: PLC0415 - see _reserved_samples

    base = getattr(mmap_dict, "MmapedDict", None)
    used = getattr(values, "MmapedDict", None)
    if not isinstance(base, type) or not isinstance(used, type) or not issubclass(used, base):
        raise _changed("values.MmapedDict is not mmap_dict.MmapedDict")
    factory = getattr(values, "MultiProcessValue", None)
    if not isinstance(factory, types.FunctionType) or "MmapedDict" not in _global_names(
        factory.__code__
    ):
        raise _changed("values.MultiProcessValue no longer makes its files as MmapedDict")
    for method, parameters in _SIGNATURES.items():
        function = getattr(base, method, None)
        if function is None or list(inspect.signature(function).parameters) != parameters:
            raise _changed(f"MmapedDict.{method} is not ({', '.join(parameters[1:])})")
    values.MmapedDict = _reserved_samples()  # type: ignore[attr-defined]


class _Full:
    """What turns this process's metrics off when a sample file cannot be reserved, and
    whether that was said."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.switches: list[Callable[[], None]] = []
        self.said = False


# Process-wide, like the samples (``gateway.metrics``).
_full = _Full()


def on_full(switch_off: Callable[[], None]) -> None:
    """From now on, call ``switch_off`` when a sample file cannot be reserved (and say so
    once more: metrics were turned on again)."""
    with _full.lock:
        if switch_off not in _full.switches:
            _full.switches.append(switch_off)
        _full.said = False


def samples_full(error: SampleSpaceError) -> None:
    """Turn metrics off in this process, which goes on serving; say why once."""
    with _full.lock:
        say, _full.said = not _full.said, True
        switches = list(_full.switches)
    if say:
        log.error(
            "metrics turned off in this process (pid %d), which goes on serving: %s",
            os.getpid(), error,
        )  # fmt: skip
    for switch_off in switches:
        switch_off()


def until_full(record: Callable[P, None]) -> Callable[P, None]:
    """``record``; metrics off (``samples_full``) when it needs a sample file's blocks and
    they cannot be reserved."""

    @functools.wraps(record)
    def recording(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except SampleSpaceError as exc:
            samples_full(exc)

    return recording


def fold_process_gone(directory: Path, pid: int) -> None:
    """Add the counters' and histograms' files of ``pid``, a process gone, into the files
    of the processes gone, then delete them (see the module docstring).

    Each file of the processes gone is written anew beside it and renamed into place, so a
    failure (``SampleSpaceError``, ``OSError``) leaves it, and ``pid``'s files, as they were.
    """
    # Imported here like everything of prometheus_client (see gateway.metrics).
    from prometheus_client.mmap_dict import mmap_key  # noqa: PLC0415
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    for kind in _FOLDED_TYPES:
        dead = directory / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        gone = directory / f"{kind}_{GONE}.db"
        files = [str(f) for f in (gone, dead) if f.exists()]
        # Not accumulated: histogram buckets as the files hold them, each bucket its own.
        merged = MultiProcessCollector.merge(files, accumulate=False)  # type: ignore[no-untyped-call]
        partial = directory / (gone.name + PARTIAL_SUFFIX)
        partial.unlink(missing_ok=True)
        samples = _reserved_samples()(str(partial))
        try:
            for metric in merged:
                for sample in metric.samples:
                    labels = sample.labels
                    key = mmap_key(
                        metric.name, sample.name, list(labels), list(labels.values()),
                        metric.documentation,
                    )  # fmt: skip
                    samples.write_value(key, sample.value, 0.0)
        except BaseException:
            samples.close()
            partial.unlink()
            raise
        samples.close()
        os.replace(partial, gone)
        dead.unlink()
