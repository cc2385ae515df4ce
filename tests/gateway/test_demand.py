"""The demand board: workers publish how many requests they compute, the ledger process
adds them up to decide whether to wait for more work before it commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cpu_turn import CpuTurn
from gateway.demand import SLOTS, DemandBoard, SharedDemand


def test_workers_publish_and_the_ledger_process_adds_up(tmp_path: Path) -> None:
    path = str(tmp_path / "demand")
    board = DemandBoard(path, create=True)
    ledger_view = SharedDemand(DemandBoard(path))  # another mapping, as in another process
    assert ledger_view.wanting == 0
    first, second = CpuTurn(), CpuTurn()
    first.publish(board.publisher(0))
    second.publish(DemandBoard(path).publisher(1))
    with first.held():
        assert ledger_view.wanting == 1
        with second.held():
            assert ledger_view.wanting == 2
            with second.aside():  # waiting for the ledger: not computing
                assert ledger_view.wanting == 1
    assert ledger_view.wanting == 0


def test_a_restarted_worker_clears_what_its_predecessor_left(tmp_path: Path) -> None:
    path = str(tmp_path / "demand")
    board = DemandBoard(path, create=True)
    board.publisher(3)(5)  # a worker died while computing five requests
    assert board.total() == 5
    board.publisher(3)  # its replacement takes the slot
    assert board.total() == 0
    # An index beyond the board publishes nothing rather than writing out of bounds.
    board.publisher(SLOTS)(7)
    assert board.total() == 0


def test_a_board_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "demand"
    DemandBoard(str(path), create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        DemandBoard(str(path), create=True)
    with pytest.raises(FileNotFoundError):
        DemandBoard(str(tmp_path / "missing"))
