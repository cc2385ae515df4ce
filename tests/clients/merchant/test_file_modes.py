"""Who may read the merchant's database: its owner only, whatever the umask. merchant.db
and its -wal and -shm files hold the orders, the cardholders' certificate thumbprints,
the sealed PIs and the capture tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from clients.merchant.records import Money
from clients.merchant.store import MerchantStore

EUR = 978
WAL_FILES = ("merchant.db", "merchant.db-wal", "merchant.db-shm")


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000])
def test_the_database_is_created_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    store = MerchantStore(tmp_path / "merchant.db")
    try:
        store.add_offer(b"lid-0001", b"two books", Money(EUR, 4250), "setpay")
        # Written and still open: the -wal and -shm files are there too.
        assert _modes(tmp_path) == dict.fromkeys(WAL_FILES, 0o600)
    finally:
        store.close()


@pytest.mark.usefixtures("umask")
def test_a_wider_database_an_older_setpay_left_is_narrowed_when_opened(tmp_path: Path) -> None:
    os.umask(0o022)
    first = MerchantStore(tmp_path / "merchant.db")
    try:
        first.add_offer(b"lid-0001", b"two books", Money(EUR, 4250), "setpay")
        for name in WAL_FILES:  # as an older setpay made them under this umask
            (tmp_path / name).chmod(0o644)
        second = MerchantStore(tmp_path / "merchant.db")  # another process, or the next start
        try:
            assert _modes(tmp_path) == dict.fromkeys(WAL_FILES, 0o600)
            assert second.offer(b"lid-0001").amount == Money(EUR, 4250)
        finally:
            second.close()
    finally:
        first.close()
