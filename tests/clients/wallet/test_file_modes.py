"""Who may read the wallet's files: the purchase history its owner only, whatever the
umask; the certificates (chain.pem, the pinned root) whoever the umask lets."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from clients.identity import read_certificates, write_atomically, write_certificates
from clients.wallet.purchases import SENT, PurchaseBook, PurchaseRecord
from setpay.v1 import common_pb2
from tests.clients.wallet.self_signed import self_signed


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _record() -> PurchaseRecord:
    trans_ids = common_pb2.TransIDs(lid_c=b"l" * 16, xid=b"x" * 20)
    return PurchaseRecord(
        xid=trans_ids.xid.hex(), merchant_target="127.0.0.1:1", merchant_thumb="ab" * 32,
        trans_ids=base64.b64encode(trans_ids.SerializeToString()).decode(), currency=978,
        amount=100, completion=SENT, auth_code="", auth_amount=0, captured=0, credited=0,
    )  # fmt: skip


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000])
def test_the_purchase_history_is_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    book = PurchaseBook(tmp_path / "purchases.json")
    book.save(_record())
    assert _mode(tmp_path / "purchases.json") == 0o600
    # The lock two commands take to save in turn: empty, and as private as the book.
    assert _mode(tmp_path / "purchases.json.lock") == 0o600
    # An older, wider file is narrowed by the next write.
    (tmp_path / "purchases.json").chmod(0o644)
    book.save(_record())
    assert _mode(tmp_path / "purchases.json") == 0o600
    assert book.all() == [_record()]


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "mode"), [(0o077, 0o600), (0o027, 0o640), (0o022, 0o644)])
def test_certificates_are_written_as_the_umask_says(tmp_path: Path, mask: int, mode: int) -> None:
    os.umask(mask)
    der = self_signed()
    write_certificates(tmp_path / "certs" / "chain.pem", [der])
    assert _mode(tmp_path / "certs" / "chain.pem") == mode
    assert read_certificates(tmp_path / "certs" / "chain.pem") == (der,)


@pytest.mark.usefixtures("umask")
def test_a_named_mode_is_exact_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    os.umask(0o077)
    write_atomically(tmp_path / "a", b"one", mode=0o640)
    assert _mode(tmp_path / "a") == 0o640 and (tmp_path / "a").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
