"""``PurchaseBook.add``: a new purchase never replaces one the book holds, two commands
adding at once included."""

from __future__ import annotations

import base64
import json
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import stat
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from clients.wallet.purchases import PurchaseBook, PurchaseRecord
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import common_pb2
from tests.clients.wallet.test_purchase_book import RECORD


def _with_xid(xid: bytes, target: str = RECORD.merchant_target) -> PurchaseRecord:
    ids = base64.b64encode(common_pb2.TransIDs(xid=xid, lid_c=b"c").SerializeToString())
    return replace(RECORD, xid=xid.hex(), trans_ids=ids.decode(), merchant_target=target)


def test_a_new_purchase_is_added_after_the_others(tmp_path: Path) -> None:
    path = tmp_path / "purchases.json"
    book = PurchaseBook(path)
    book.refuse_known(RECORD.xid)  # no book yet: nothing to refuse
    book.add(RECORD)
    other = _with_xid(b"\x01" * 32)
    book.add(other)
    assert book.all() == [RECORD, other]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# Letters in its short id, so that its case shows in what the wallet prints.
LETTERED = bytes.fromhex("abcdef01") + bytes(range(28))


def _spaced(xid: str) -> str:
    return " ".join(xid[i : i + 8] for i in range(0, len(xid), 8)).upper()


@pytest.mark.parametrize(
    "held_as", [str.lower, str.upper, _spaced], ids=["as-written", "upper-case", "spaced"]
)
def test_an_xid_the_book_holds_is_refused_and_nothing_written(
    tmp_path: Path, held_as: Callable[[str], str]
) -> None:
    path = tmp_path / "purchases.json"
    earlier = replace(_with_xid(LETTERED), completion="COMPLETION_CODE_AUTHORIZATION_PERFORMED")
    # Written by hand or by another program, an XID may be in capitals or spaced: the same
    # XID, found by the short id the refusal names.
    path.write_text(json.dumps([{**asdict(earlier), "xid": held_as(earlier.xid)}]))
    held = path.read_bytes()
    book = PurchaseBook(path)
    offered = replace(earlier, merchant_target="127.0.0.1:9999", completion="SENT")
    refusals: tuple[Callable[[], None], ...] = (
        lambda: book.refuse_known(offered.xid),
        lambda: book.add(offered),
    )
    for refusing in refusals:
        with pytest.raises(ProtocolError) as caught:
            refusing()
        assert caught.value.code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
        assert "earlier purchase abcdef01: " in caught.value.reason
        assert path.read_bytes() == held
    assert book.find("abcdef01") == earlier


# XIDs both processes try to add, in the same order: each is offered to both at about the
# same time, and only one may have it. 40 rounds overlap many times (each add is a read, a
# write and an fsync): a check made outside the lock let both add in every run of 40.
ADDS_PER_PROCESS = 40


def _add_all(
    path: str,
    target: str,
    start: multiprocessing.synchronize.Barrier,
    won: multiprocessing.queues.Queue[tuple[str, list[str]]],
) -> None:
    """One wallet command after another, each adding the next XID as a purchase at
    ``target``; ``target`` and the XIDs it got put in ``won``."""
    book = PurchaseBook(Path(path))
    mine: list[str] = []
    start.wait()
    for n in range(ADDS_PER_PROCESS):
        record = _with_xid(n.to_bytes(32, "big"), target)
        try:
            book.add(record)
        except ProtocolError:
            continue
        mine.append(record.xid)
    won.put((target, mine))


def test_two_processes_adding_one_xid_at_once_record_it_once(tmp_path: Path) -> None:
    # Two real processes, as two `setpay wallet purchase` commands from two shells.
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    won: multiprocessing.queues.Queue[tuple[str, list[str]]] = spawn.Queue()
    path = str(tmp_path / "purchases.json")
    targets = ("127.0.0.1:1001", "127.0.0.1:1002")
    workers = [
        spawn.Process(target=_add_all, args=(path, target, start, won)) for target in targets
    ]
    for worker in workers:
        worker.start()
    # Joined first (what each puts is a few KB, well within the pipe's buffer): a worker
    # that failed fails the test now, not after a wait for results that never come.
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    results = [won.get(timeout=10) for _ in workers]
    records = PurchaseBook(Path(path)).all()
    xids = [r.xid for r in records]
    assert sorted(xids) == sorted(n.to_bytes(32, "big").hex() for n in range(ADDS_PER_PROCESS))
    # Each XID went to one process, and its record is that process's: none replaced.
    assert sorted(results[0][1] + results[1][1]) == sorted(xids)
    recorded = {r.xid: r.merchant_target for r in records}
    for target, mine in results:
        assert all(recorded[xid] == target for xid in mine)
