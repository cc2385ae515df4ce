"""A refusal record that does not read as one is no refusal, and never holds a login.

The record lives beside the token's lock files, in a directory only the bank's user may
write; what else that user (or a damaged disk) leaves at its path must neither crash
every login nor stop one: JSON nested past the parser's depth, a FIFO (an open of one
would wait for a writer with the login lock held), a directory, a symbolic link.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from hsm.pin_latch import PinLatch, _as_json
from hsm.pinsource import PinSource


def _latch_at(tmp_path: Path) -> tuple[PinLatch, Path]:
    pin = tmp_path / "token.pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    latch = PinLatch(PinSource.parse(f"file:{pin}"))
    latch.share_at(str(tmp_path / "token"))
    assert latch._shared_path is not None
    return latch, Path(latch._shared_path)


def _checked_within(latch: PinLatch, seconds: float = 3.0) -> list[object]:
    """``check_shared`` run aside: what it raised or returned, if it ended in time."""
    ended: list[object] = []

    def check() -> None:
        try:
            latch.check_shared()
            ended.append(None)
        except BaseException as exc:  # what a login would meet
            ended.append(exc)

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(seconds)
    return ended


@pytest.mark.parametrize("kind", ["deep JSON", "fifo", "directory", "symlink"])
def test_a_record_that_is_not_one_is_no_refusal(tmp_path: Path, kind: str) -> None:
    latch, path = _latch_at(tmp_path)
    if kind == "deep JSON":
        path.write_text("[" * 4096)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        target = tmp_path / "elsewhere.json"
        target.write_text('{"source": "anything"}')
        path.symlink_to(target)
    assert _checked_within(latch) == [None]  # ended, and refused nothing


@pytest.mark.parametrize("with_data", [False, True], ids=["empty", "a forged record"])
def test_a_fifo_with_a_writer_attached_is_no_refusal(tmp_path: Path, with_data: bool) -> None:
    """Only a regular file is a record: a FIFO someone holds open for writing neither
    crashes the login (nothing to read yet) nor refuses it (a record written into it)."""
    latch, path = _latch_at(tmp_path)
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # so that the writer's open ends
    writer = os.open(path, os.O_WRONLY)
    try:
        if with_data:
            record = {
                "source": latch._source.describe(),
                "identity": _as_json(latch.identity()),
                "message": "forged",
            }
            os.write(writer, json.dumps(record).encode())
        assert _checked_within(latch) == [None]
    finally:
        os.close(writer)
        os.close(reader)
