"""A refusal record that does not read as one is no refusal, and never holds a login.

The record lives beside the token's lock files, in a directory only the bank's user may
write; what else that user (or a damaged disk) leaves at its path must neither crash
every login nor stop one: JSON nested past the parser's depth, a FIFO (an open of one
would wait for a writer with the login lock held), a directory, a symbolic link.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hsm.pin_latch import PinLatch, _as_json

from .pin_latch_support import ended_within, file_latch


def _latch_at(tmp_path: Path) -> tuple[PinLatch, Path]:
    latch = file_latch(tmp_path)
    return latch, Path(latch._shared_path or "")


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
    assert ended_within(latch.check_shared) == [None]  # ended, and refused nothing


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
        assert ended_within(latch.check_shared) == [None]
    finally:
        os.close(writer)
        os.close(reader)
