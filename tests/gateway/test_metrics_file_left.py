"""A sample file left by an earlier process of the same pid (its files were not folded: a
bank stopped before its supervisor tidied them, a pid reused) has a size but maybe no disk
blocks: the client made it by truncating. ``ReservedSamples`` reserves what it holds before
it maps it, as it does a file it makes: on a disk with room it is all on disk, and on a
full one it is refused (``SampleSpaceError``: metrics off, see ``metrics_files``) where
mapping the hole would kill the process with SIGBUS at its first sample. On a real small
tmpfs (mounting one needs root, as the CI has: where it cannot, the tests fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import metrics, metrics_files

from .sample_files import as_process, tmpfs
from .served import REPOSITORY


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 512 KiB: room for a process's first files, and soon full."""
    with tmpfs(tmp_path / "samples", "size=512k") as mount_point:
        yield mount_point


def _left_with_no_blocks(filename: Path) -> None:
    """``filename`` as the client leaves a file it made and never wrote: a hole."""
    with filename.open("wb") as f:
        f.truncate(metrics_files.FIRST_FILE_BYTES)
    assert filename.stat().st_blocks == 0


def test_a_file_an_earlier_process_of_the_pid_left_is_reserved_before_it_is_mapped(
    small_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = small_filesystem / "counter_300.db"
    _left_with_no_blocks(left)
    with as_process(300, small_filesystem, monkeypatch):
        try:
            metrics.enable(0)  # its counters go to the file left
            assert metrics.enabled()
        finally:
            metrics.disable()
    assert left.stat().st_size == metrics_files.FIRST_FILE_BYTES
    # Blocks of 512 bytes: all of it on disk (without the reservation: the page written).
    assert left.stat().st_blocks * 512 >= left.stat().st_size


# A process of the pid of a counters' file left with no blocks, on a full disk: its first
# counter's value opens that file.
_PROCESS = """
import os
samples = os.environ["PROMETHEUS_MULTIPROC_DIR"]
with open(f"{samples}/counter_{os.getpid()}.db", "wb") as f:
    f.truncate(int(os.environ["LEFT_BYTES"]))
fd = os.open(samples + "/other-program.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
for chunk in (65536, 512):
    try:
        while True:
            os.write(fd, bytes(chunk))
    except OSError:
        pass
os.close(fd)
from gateway import metrics_files
metrics_files.reserve_sample_files()
from prometheus_client import Counter
try:
    Counter("setpay_left_total", "A counter in the file left", registry=None)
except metrics_files.SampleSpaceError as exc:
    print("refused:", exc, flush=True)
else:
    print("mapped", flush=True)
"""


def test_a_file_left_with_no_blocks_on_a_full_disk_is_refused_not_mapped(
    small_filesystem: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    env[metrics.MULTIPROC_ENV] = str(small_filesystem)
    env["LEFT_BYTES"] = str(metrics_files.FIRST_FILE_BYTES)
    done = subprocess.run(
        [sys.executable, "-c", _PROCESS], env=env, cwd=REPOSITORY, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr)  # mapped unreserved: -SIGBUS
    assert done.stdout.splitlines() == [
        f"refused: the metrics sample directory {small_filesystem} is full "
        "(No space left on device)"
    ], done.stdout
