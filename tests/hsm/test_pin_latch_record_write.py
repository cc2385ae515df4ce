"""A refusal record is replaced whole, never written in place.

The record was opened with O_TRUNC and written where it lay: a writer that failed part
way (a disk full: ``os.write`` writes less, then nothing) or died there (a kill) left it
torn or empty, which reads as no record. An environment PIN's record holds an entry for
each bank start whose PIN was refused, so one start's torn write dropped the others'
entries, and their next workers offered their refused PINs once more. What else was at
the record's path held a login too: a FIFO's open for writing waited for a reader with
the login lock held, and a link made every refusal go unshared. Now the record is written
to a temporary file beside it, synced and renamed over it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hsm import pinsource
from hsm.errors import PermanentBackendError
from hsm.pin_latch import PinLatch
from hsm.pinsource import PinSource

from .pin_latch_support import ended_within, file_latch

VARIABLE = "SETPAY_TEST_LATCH_WRITE_PIN"


class _Killed(BaseException):
    """The writer's process ending where it stands: nothing after it runs."""


def _in_start(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """This process as one of the bank start ``name``, its supervisor alive (this one)."""
    monkeypatch.setattr(pinsource, "_bank_start", name)
    monkeypatch.setattr(pinsource, "_bank_supervisor", os.getpid(), raising=False)


def _env_latch(tmp_path: Path) -> PinLatch:
    latch = PinLatch(PinSource.parse(f"env:{VARIABLE}"))
    latch.share_at(str(tmp_path / "token"))
    assert latch._shared_path is not None
    return latch


def _refusal(latch: PinLatch) -> str | None:
    """The refusal a fresh process would meet at its next login, if any."""
    try:
        latch.check_shared()
    except PermanentBackendError as exc:
        return str(exc)
    return None


def _left_beside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))


def _half_then(failure: str) -> Callable[[int, object], int]:
    """An ``os.write`` that writes the first half of what it is first given, then fails as
    ``failure``: the disk full (that write returns short, the next raises ENOSPC), or the
    process killed (nothing after that half runs: ``_Killed``)."""
    calls: list[int] = []
    real = os.write

    def write(fd: int, data: object) -> int:
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(data)  # type: ignore[call-overload]
        written = real(fd, chunk[: len(chunk) // 2])
        if failure == "killed":
            raise _Killed
        return written

    return write


@pytest.mark.parametrize("failure", ["disk full", "killed"])
def test_a_write_failing_part_way_keeps_the_other_starts_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Before: start B's torn write left half a record, which reads as none: start A's
    next worker met no refusal and offered A's refused PIN once more."""
    monkeypatch.setenv(VARIABLE, "0000")
    _in_start(monkeypatch, "start-a")
    first = _env_latch(tmp_path)
    first.latch(first.identity(), "A: login refused", share=True)
    path = Path(first._shared_path or "")
    before = path.read_bytes()

    _in_start(monkeypatch, "start-b")
    second = _env_latch(tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(os, "write", _half_then(failure))
        if failure == "disk full":
            second.latch(second.identity(), "B: login refused", share=True)  # best effort
        else:
            with pytest.raises(_Killed):
                second.latch(second.identity(), "B: login refused", share=True)

    assert path.read_bytes() == before
    _in_start(monkeypatch, "start-a")
    assert _refusal(_env_latch(tmp_path)) == "A: login refused"  # A's next worker
    assert _left_beside(tmp_path) == []


@pytest.fixture
def halving_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``os.write`` writing half of what it is given (at least a byte) each time."""
    sizes: list[int] = []
    real = os.write

    def write(fd: int, data: object) -> int:
        chunk = bytes(data)  # type: ignore[call-overload]
        sizes.append(len(chunk))
        return real(fd, chunk[: max(1, len(chunk) // 2)])

    monkeypatch.setattr(os, "write", write)
    return sizes


def test_every_byte_is_written_when_each_write_writes_half(
    tmp_path: Path, halving_writes: list[int]
) -> None:
    """Before, the first short write was all there was: a torn record, no refusal."""
    latch = file_latch(tmp_path)
    latch.latch(latch.identity(), "login refused", share=True)
    assert _refusal(file_latch(tmp_path)) == "login refused"
    assert len(halving_writes) > 1


def test_a_fifo_at_the_records_path_holds_no_login(tmp_path: Path) -> None:
    """Before: the write's open of the FIFO waited for a reader, login lock held."""
    latch = file_latch(tmp_path)
    path = latch._shared_path or ""
    os.mkfifo(path)
    try:
        refused = ended_within(lambda: latch.latch(latch.identity(), "login refused", share=True))
        assert refused == [None]
        assert stat.S_ISREG(os.lstat(path).st_mode)
        assert _refusal(file_latch(tmp_path)) == "login refused"
    finally:
        # Lets a writer still waiting on the FIFO (the code before) go.
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def test_a_link_at_the_records_path_is_replaced_never_followed(tmp_path: Path) -> None:
    """Before: the write refused to follow the link and shared nothing, so every other
    process offered the refused PIN once more. Its target is never written."""
    latch = file_latch(tmp_path)
    path = Path(latch._shared_path or "")
    target = tmp_path / "elsewhere.json"
    target.write_text("untouched")
    path.symlink_to(target)
    latch.latch(latch.identity(), "login refused", share=True)
    assert target.read_text() == "untouched"
    assert not path.is_symlink()
    assert _refusal(file_latch(tmp_path)) == "login refused"


def test_a_directory_at_the_records_path_is_left_and_nothing_beside_it(
    tmp_path: Path,
) -> None:
    latch = file_latch(tmp_path)
    path = Path(latch._shared_path or "")
    path.mkdir()
    latch.latch(latch.identity(), "login refused", share=True)  # best effort: no error
    assert path.is_dir() and list(path.iterdir()) == []
    assert _left_beside(tmp_path) == []
    with pytest.raises(PermanentBackendError, match="login refused"):
        latch.check()  # still refused in its own process


def test_the_record_is_the_owners_alone_and_reads_whole(tmp_path: Path) -> None:
    latch = file_latch(tmp_path)
    latch.latch(latch.identity(), "login refused", share=True)
    path = Path(latch._shared_path or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_bytes())["message"] == "login refused"
    assert _left_beside(tmp_path) == []
    # Written again over the last: replaced, still the owner's alone.
    latch.latch(latch.identity(), "refused again", share=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _refusal(file_latch(tmp_path)) == "refused again"


def _cut(record: bytes, kind: str) -> bytes:
    return {"empty": b"", "half": record[: len(record) // 2], "one short": record[:-1]}[kind]


@pytest.mark.parametrize("kind", ["empty", "half", "one short"])
def test_a_torn_or_empty_record_is_no_refusal_and_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """What a writer of an older version left (a torn record) reads as none, never an
    error; the next refusal replaces it with one that reads."""
    monkeypatch.setenv(VARIABLE, "0000")
    _in_start(monkeypatch, "start-a")
    first = _env_latch(tmp_path)
    first.latch(first.identity(), "A: login refused", share=True)
    path = Path(first._shared_path or "")
    path.write_bytes(_cut(path.read_bytes(), kind))

    assert _refusal(_env_latch(tmp_path)) is None  # read as none, no crash
    _in_start(monkeypatch, "start-b")
    second = _env_latch(tmp_path)
    assert _refusal(second) is None
    second.latch(second.identity(), "B: login refused", share=True)
    assert set(json.loads(path.read_bytes())["starts"]) == {"start-b"}
    assert _refusal(_env_latch(tmp_path)) == "B: login refused"


def test_the_new_record_is_synced_before_it_replaces_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed over the record unsynced, a power loss could leave the new name on an
    empty file: the torn record this replaces, by another road."""
    latch = file_latch(tmp_path)
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        assert synced == [source], "the record was renamed into place before its sync"
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    latch.latch(latch.identity(), "login refused", share=True)
    assert _refusal(file_latch(tmp_path)) == "login refused"


_KILLED_WRITER = """\
import os, sys, time
from hsm.pin_latch import PinLatch
from hsm.pinsource import PinSource
latch = PinLatch(PinSource.parse("file:" + sys.argv[1]))
latch.share_at(sys.argv[2])
def fsync(fd):
    print("syncing", flush=True)
    time.sleep(60)
os.fsync = fsync
latch.latch(latch.identity(), "refused by the killed writer", share=True)
"""


def test_what_a_killed_writer_leaves_stops_no_later_write(tmp_path: Path) -> None:
    """A writer killed before its rename leaves its temporary file beside the record
    (nothing of it runs after the kill): the record stays as it was, and the next write
    goes ahead, under a name of its own, where one fixed name would be refused for good."""
    latch = file_latch(tmp_path)
    latch.latch(latch.identity(), "first refusal", share=True)
    argv = [str(tmp_path / "token.pin"), str(tmp_path / "token")]
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, *argv],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "syncing\n"
        writer.kill()
    finally:
        writer.wait(10)
    assert len(_left_beside(tmp_path)) == 1
    assert _refusal(file_latch(tmp_path)) == "first refusal"
    latch.latch(latch.identity(), "second refusal", share=True)
    assert _refusal(file_latch(tmp_path)) == "second refusal"
