"""Withdrawing a reaped worker's demand (``gateway.child.withdraw_demand``,
``DemandBoard.withdraw``): one slot, only on a board that exists, never raising into the
supervisor's loop."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gateway.child import LEDGER_INDEX, withdraw_demand
from gateway.config import BankConfig
from gateway.demand import SLOTS, DemandBoard, demand_path
from gateway.worker import WorkerPlan

DEAD = 1  # the index of the reaped worker


def _plan(tmp_path: Path, *, ledger: bool = True) -> WorkerPlan:
    return WorkerPlan(
        config=BankConfig(base_dir=tmp_path),
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getpid(),
        ledger_socket=str(tmp_path / "ledger.sock") if ledger else None,
    )


def test_withdrawing_clears_one_slot_and_nothing_outside_the_board(tmp_path: Path) -> None:
    board = DemandBoard(str(tmp_path / "demand"), create=True)
    board.publisher(0)(1)
    board.publisher(SLOTS - 1)(2)
    board.withdraw(SLOTS - 1)
    assert board.total() == 1
    for index in (LEDGER_INDEX, SLOTS):  # no slot: nothing written, nothing raised
        board.withdraw(index)
    assert board.total() == 1
    board.close()


def test_withdrawing_reaches_the_board_beside_the_ledger_socket(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert plan.ledger_socket is not None
    board = DemandBoard(demand_path(plan.ledger_socket), create=True)
    board.publisher(DEAD)(4)
    board.publisher(0)(1)
    withdraw_demand(plan, DEAD)
    assert board.total() == 1
    withdraw_demand(plan, LEDGER_INDEX)  # the ledger process has no slot
    assert board.total() == 1


def test_without_a_ledger_process_there_is_nothing_to_withdraw(tmp_path: Path) -> None:
    # No ledger socket names a board: a look for one would raise (no path to it), which
    # withdraw_demand does not catch.
    withdraw_demand(_plan(tmp_path, ledger=False), DEAD)
    assert not (tmp_path / "demand").exists()


def test_a_board_that_cannot_be_opened_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = _plan(tmp_path)  # the board was never made (or is gone)
    with caplog.at_level(logging.WARNING, logger="setpay.workers"):
        withdraw_demand(plan, DEAD)
    assert "worker 1: its demand slot could not be cleared (FileNotFoundError" in caplog.text
    (tmp_path / "demand").write_bytes(b"\0" * 4)  # too short to map as a board
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="setpay.workers"):
        withdraw_demand(plan, DEAD)
    assert "worker 1: its demand slot could not be cleared (ValueError" in caplog.text
    assert (tmp_path / "demand").read_bytes() == b"\0" * 4  # unchanged
