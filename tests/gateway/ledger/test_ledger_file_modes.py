"""ledger.db and its WAL files are the bank's user's alone, whatever the umask: they hold
sealed PANs, balances, and each card's masked number and expiry in clear."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.ledger import Ledger, LedgerKeys, SqliteLedgerStore
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A


def _modes(path: Path) -> dict[str, int]:
    return {
        name.name: stat.S_IMODE(name.stat().st_mode)
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if name.exists()
    }


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000])
def test_a_new_ledger_is_owner_only(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    path = tmp_path / "ledger.db"
    ledger = Ledger(SqliteLedgerStore(path), LedgerKeys.generate())
    try:
        ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
        modes = _modes(path)
        assert set(modes) == {"ledger.db", "ledger.db-wal", "ledger.db-shm"}
        assert set(modes.values()) == {0o600}
    finally:
        ledger.close()


@pytest.mark.usefixtures("umask")
def test_a_ledger_left_wider_is_narrowed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    os.umask(0o022)
    ledger = Ledger(SqliteLedgerStore(path), LedgerKeys.generate())
    ledger.close()
    for name in _modes(path):
        os.chmod(tmp_path / name, 0o644)
    again = Ledger(SqliteLedgerStore(path), LedgerKeys.generate())
    try:
        assert set(_modes(path).values()) == {0o600}
    finally:
        again.close()
