"""The demand board on a full filesystem: refused where it is made, never a SIGBUS later.

The board was made by extending an empty file to its size, a sparse file: on a full
filesystem that succeeds, and the first write through any process's mapping of it (a
worker publishing its count, the supervisor withdrawing a dead worker's) is SIGBUS, as
it was for the metrics sample files (``gateway.metrics_files``). Written whole, the board
holds its blocks, and a full filesystem is ENOSPC where the bank makes it, at the start,
with nothing left behind. A real tmpfs, as the metrics tests use (root, as the CI has).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demand import DemandBoard
from gateway.ledger_process import LedgerSocket

from .sample_files import tmpfs


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Path]:
    """A one-page tmpfs whose every block a file holds: nothing more can be written."""
    with tmpfs(tmp_path / "full", "size=4k") as mount_point:
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError) as no_room:
                while True:
                    os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
        assert no_room.value.errno == errno.ENOSPC
        yield mount_point


def test_a_board_made_on_a_full_filesystem_is_refused_there(full: Path) -> None:
    with pytest.raises(OSError) as refused:
        DemandBoard(str(full / "demand"), create=True)
    assert refused.value.errno == errno.ENOSPC


def test_the_ledger_services_directory_on_a_full_filesystem_leaves_nothing(
    full: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(full))
    with pytest.raises(OSError) as refused:
        LedgerSocket()
    assert refused.value.errno == errno.ENOSPC
    assert sorted(os.listdir(full)) == ["filler"]


def test_a_board_with_room_is_made_whole_and_zeroed(tmp_path: Path) -> None:
    path = tmp_path / "demand"
    board = DemandBoard(str(path), create=True)
    board.publisher(3)(7)
    assert path.stat().st_size == 256
    assert path.stat().st_blocks > 0  # its blocks held, not a hole
    assert DemandBoard(str(path)).publisher  # opened again by another process as made
