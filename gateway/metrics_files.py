"""The sample files of the bank's processes: their disk blocks reserved, a full disk turned
into metrics off, and the files of the processes gone folded into one per type.

A full disk. prometheus_client keeps each process's samples in files it maps into memory
(its ``MmapedDict``): it makes a file of 64 KiB, doubled as series are added, by
truncating it, which gives the file a size but no disk blocks, and writes through the
mapping. On a full filesystem the first write to such a page is no exception but SIGBUS:
a serving worker died of it at its next new series, its replacement in
``gateway.metrics.enable``, and the supervisor stopped the bank. So
``reserve_sample_files`` puts ``ReservedSamples`` where the client looks its file class up:
it reserves a file's blocks when the file is made and before it grows, and any failure to
make, reserve or rename a sample file (no blocks, no inodes, a quota, a full directory)
becomes ``SampleSpaceError``. The serving functions turn that into metrics off in their
process (``until_full``, ``samples_full``), said in one ERROR line, and drop its live
gauges' files, which would otherwise stay on the page frozen (a call in flight for ever);
the process goes on serving. The client's internals are no interface, and pyproject names
the versions this was verified with: ``reserve_sample_files`` checks the shape it relies
on, then makes one value as the client makes them and checks its file is reserved, and
refuses to start (``MetricsError``) where either fails, rather than reserve nothing.

Reserved by writing. The blocks are reserved by writing the bytes they will hold (zeros,
past a file's end), through a descriptor of our own, not by ``posix_fallocate``: writing
reserves on every filesystem the file can be written on at all, where fallocate needs the
kernel's support for the filesystem (ext3, older NFS and many FUSE filesystems lack it),
glibc's fallback for it refuses the client's own descriptor, opened to append, and musl
has none. Fallocate first, writing where it is refused, would save writing a few hundred
KiB over a process's life at the price of a second way that only some filesystems take.
What is written is never what the mapping has written: a file's growth is past its end,
and a file left by an earlier process of the pid is written back as it is, before it is
mapped. Copy-on-write filesystems, and those that store zeros as holes (ZFS with
compression), cannot be reserved on by any means: keep the sample directory off them.

The processes gone. A dead worker's counters' and histograms' files must stay counted,
or the totals would step back; but every file costs every scrape a read, and a worker
that crashes in a loop leaves thousands, until every scrape outlives its time.
``fold_process_gone`` adds a dead process's files into the directory's file of the
processes gone for their type (``counter_gone.db``: the client reads a file's type from
its name's first part) and deletes them: the totals stay, the directory stays small. A
histogram series its process was cut off making (a disk that filled between its sum and
its last bucket) has no +Inf bucket; it is left out rather than kept for good.

Errors: ``MetricsError`` (metrics cannot be turned on as configured), ``SampleSpaceError``
(a sample file could not be made, reserved or renamed: its filesystem is full, mostly).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import os
import shutil
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec

log = logging.getLogger("setpay.metrics")

P = ParamSpec("P")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The client's versions this module's tests were run on: the oldest and newest allowed, and
# the last release of each minor version between (a 0.22.0 or 0.24.0 is checked at start
# only, by ``reserve_sample_files``).
VERIFIED_CLIENTS = ("0.21.0", "0.21.1", "0.22.1", "0.23.1", "0.24.1", "0.25.0", "0.26.0")
# pyproject.toml's requirement, word for word (a test keeps the two the same).
CLIENT_REQUIREMENT = "prometheus-client>=0.21,<=0.26.0"
# The probe's directory, in the sample directory: this, the pid of the process probing, a
# dash. The collector reads the directory's ``*.db`` and no subdirectory's, the files of
# the processes gone are named by type: a probe's file, even one left by a process killed
# mid-probe, is never scraped or folded, and the next probe removes it.
PROBE_PREFIX = "setpay-probe-"
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
    """A sample file could not be made, reserved or renamed (its filesystem is full, of
    blocks or of inodes, mostly)."""

    def __init__(self, filename: str, error: OSError) -> None:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        state = "is full" if full else "cannot hold more samples"
        directory = os.path.dirname(filename)
        super().__init__(f"the metrics sample directory {directory} {state} ({error.strerror})")


def _write_blocks(fd: int, start: int, end: int) -> None:
    """Give bytes ``start`` to ``end`` of ``fd`` their disk blocks by writing them: what the
    file holds there, zeros past its end (see the module docstring)."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, end - start, start) if start < size else b""
    view = memoryview(data.ljust(end - start, b"\0"))
    offset = start
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            if written <= 0:  # a regular file writes something, or fails saying why
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view, offset = view[written:], offset + written
    except BaseException:
        if size < end:  # give back what was written past the end
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
        raise


def _reserve(filename: str, start: int, end: int) -> None:
    """Reserve bytes ``start`` to ``end`` of ``filename`` on disk, through a descriptor of
    its own (the client's appends)."""
    try:
        fd = os.open(filename, os.O_RDWR | os.O_CLOEXEC)
        try:
            _write_blocks(fd, start, end)
        finally:
            os.close(fd)  # on NFS, where a write's failure may first be told
    except OSError as exc:
        raise SampleSpaceError(filename, exc) from exc


def _make_reserved(filename: str) -> int:
    """Reserve what ``filename`` holds, or make it, reserved, if it is missing or empty;
    the bytes reserved."""
    try:
        size = os.stat(filename).st_size
    except FileNotFoundError:
        size = 0
    except OSError as exc:
        raise SampleSpaceError(filename, exc) from exc
    if size:  # left by an earlier process of this pid, whose files were not folded
        _reserve(filename, 0, size)
        return size
    partial = filename + PARTIAL_SUFFIX
    try:
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
            _reserve(partial, 0, FIRST_FILE_BYTES)
            os.replace(partial, filename)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    except OSError as exc:  # no inode, a quota, a full directory
        raise SampleSpaceError(filename, exc) from exc
    return FIRST_FILE_BYTES


@functools.cache
def _reserved_samples() -> type[Any]:
    """The client's sample file class, its blocks reserved (made on first use: importing
    the client must wait for PROMETHEUS_MULTIPROC_DIR, see ``gateway.metrics``)."""
    from prometheus_client.mmap_dict import MmapedDict  # noqa: PLC0415 - as above

    class ReservedSamples(MmapedDict):
        """A sample file whose disk blocks are reserved before they are written."""

        def __init__(self, filename: str, read_mode: bool = False) -> None:
            reserved = 0 if read_mode else _make_reserved(filename)
            try:
                super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise SampleSpaceError(filename, exc) from exc
            missing = [name for name in _ATTRIBUTES if not hasattr(self, name)]
            if missing:
                self.close()  # type: ignore[no-untyped-call]
                raise _changed(f"its sample files have no {', '.join(missing)}")
            if read_mode:
                return
            if self._capacity > reserved:  # all it maps, should it size a file otherwise
                try:
                    _reserve(filename, reserved, self._capacity)
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
                _reserve(self._fname, self._capacity, capacity)
            try:
                super()._init_value(key)  # type: ignore[no-untyped-call]
            except OSError as exc:  # its own truncate or mapping
                raise SampleSpaceError(self._fname, exc) from exc

    return ReservedSamples


def _changed(what: str) -> MetricsError:
    try:
        version = metadata.version("prometheus-client")
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return MetricsError(
        f"prometheus_client {version} has changed ({what}): its sample files cannot be "
        "reserved on disk, and a full disk would kill the bank's processes (SIGBUS); "
        f"install {CLIENT_REQUIREMENT} (verified with {', '.join(VERIFIED_CLIENTS)})"
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

    Raises ``MetricsError`` if the client no longer has the shape this relies on (where
    its file-backed values look up their file class, and that class's methods), or if a
    value it makes then has a file of another class, or if PROMETHEUS_MULTIPROC_DIR is
    not set (no sample files to reserve): nothing stays installed. Raises
    ``SampleSpaceError`` if the sample directory cannot hold that value's directory.

    Once installed, it stays, and a second call checks nothing again: the supervisor
    installs and probes it before forking, and its workers and ledger process inherit it
    (installed only after a successful probe, in this process or the one it was forked from).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if not configured:
        raise MetricsError(f"{MULTIPROC_ENV} is not set: there are no sample files to reserve")
    from prometheus_client import mmap_dict, values  # noqa: PLC0415 - see _reserved_samples

    base = getattr(mmap_dict, "MmapedDict", None)
    used = getattr(values, "MmapedDict", None)
    if not isinstance(base, type) or not isinstance(used, type) or not issubclass(used, base):
        raise _changed("values.MmapedDict is not mmap_dict.MmapedDict")
    if used is _reserved_samples():  # installed and probed: here, or before the fork
        return
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
    try:
        _probe(factory, configured)
    except BaseException:
        values.MmapedDict = used  # type: ignore[attr-defined,assignment]
        raise


def _probe(factory: Callable[..., Any], samples: str) -> None:
    """Make one counter value through ``factory`` (the client's MultiProcessValue) in a
    directory of its own inside ``samples``, the sample directory, and check its file is a
    ``ReservedSamples``: the shape checked above says where the client looks its file class
    up, not that it still does (an import moved into the function would pass it,
    reserving nothing).

    Inside the sample directory, not the system's temporary one: the bank must run where
    only the sample directory is writable (a read-only container's volume), and the
    probe's file is reserved where the samples will be. The client reads the directory
    from the environment: this sets it for the moment, at start, before any thread
    records. The value's file is closed here, as the client before 0.26.0 has no
    ``close_all_files``: left open, it stays mapped, its blocks held, for the process's
    life (its directory is removed, the file is not while open).
    """
    _remove_stale_probes(samples)
    try:
        directory = tempfile.mkdtemp(prefix=f"{PROBE_PREFIX}{os.getpid()}-", dir=samples)
    except OSError as exc:
        raise SampleSpaceError(os.path.join(samples, PROBE_PREFIX), exc) from exc
    value_class: Any = None
    value: Any = None
    try:
        os.environ[MULTIPROC_ENV] = directory
        value_class = factory(process_identifier=lambda: "probe")
        value = value_class("counter", "probe", "probe", (), (), "probe")
        made = type(getattr(value, "_file", None))
    except SampleSpaceError:  # raised by nothing but a ReservedSamples
        made = _reserved_samples()
    except Exception as exc:  # a client that makes its values otherwise
        raise _changed(f"values.MultiProcessValue made no value: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            value._file.close()
        with contextlib.suppress(Exception):  # 0.26.0 and later: what else it made
            value_class.close_all_files()
        os.environ[MULTIPROC_ENV] = samples
        shutil.rmtree(directory, ignore_errors=True)
    if not issubclass(made, _reserved_samples()):
        raise _changed(f"values.MultiProcessValue made its file as {made.__name__}")


def _remove_stale_probes(samples: str) -> None:
    """Remove the probe directories in ``samples`` of processes gone (killed mid-probe) or
    of this pid (an earlier process's): never scraped, but each holds a file's blocks."""
    # Unreadable: the probe's own making, next, says why.
    with contextlib.suppress(OSError), os.scandir(samples) as entries:
        for entry in entries:
            pid = entry.name.removeprefix(PROBE_PREFIX).partition("-")[0]
            if not (entry.name.startswith(PROBE_PREFIX) and pid.isascii() and pid.isdigit()):
                continue  # not a probe's
            if int(pid) == os.getpid() or not _running(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (it may be another user's)."""
    if pid <= 0:  # no process: 0 and below name process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's, running
        return True
    return True


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
    """Turn metrics off in this process, which goes on serving; say why once. Its live
    gauges' files go, as they would at its death (``mark_process_dead``, as the supervisor
    calls it): frozen, they would tell of calls in flight for ever, and of validity ends
    that raise false alerts."""
    pid = os.getpid()
    with _full.lock:
        say, _full.said = not _full.said, True
        switches = list(_full.switches)
    if say:
        log.error(
            "metrics turned off in this process (pid %d), which goes on serving: %s",
            pid, error,
        )  # fmt: skip
    for switch_off in switches:
        switch_off()
    samples = os.environ.get(MULTIPROC_ENV)
    if samples:  # else no files: a SampleSpaceError comes of nothing but a sample file
        from prometheus_client import multiprocess  # noqa: PLC0415 - see _reserved_samples

        with contextlib.suppress(OSError):  # what is left stays frozen, as before
            multiprocess.mark_process_dead(pid, samples)  # type: ignore[no-untyped-call]


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
        try:
            samples = _reserved_samples()(str(partial))
            try:
                for metric in merged:
                    for sample in _whole(metric):
                        labels = sample.labels
                        key = mmap_key(
                            metric.name, sample.name, list(labels), list(labels.values()),
                            metric.documentation,
                        )  # fmt: skip
                        samples.write_value(key, sample.value, 0.0)
            finally:
                samples.close()
            os.replace(partial, gone)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        dead.unlink()


def _whole(metric: Any) -> Iterator[Any]:
    """``metric``'s samples, but for a histogram's series with no +Inf bucket: a process
    cut off making one (a full disk) wrote its sum and some buckets, never the last."""
    if metric.type != "histogram":
        yield from metric.samples
        return

    def series(sample: Any) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in sample.labels.items() if k != "le")

    whole = {series(s) for s in metric.samples if s.labels.get("le") == "+Inf"}
    yield from (s for s in metric.samples if series(s) in whole)
