"""``purchases.json``: what the wallet remembers of its purchases, and a damaged one refused."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.wallet.purchases import REFUSED, SENT, PurchaseBook, PurchaseRecord
from setpay.v1 import common_pb2

XID = bytes(range(32))
TRANS_IDS = common_pb2.TransIDs(lid_c=b"lid-c", lid_m=b"lid-m", xid=XID, language="en")
RECORD = PurchaseRecord(
    xid=XID.hex(), merchant_target="127.0.0.1:8443", merchant_thumb="ab" * 32,
    trans_ids=base64.b64encode(TRANS_IDS.SerializeToString()).decode(), currency=978,
    amount=1250, completion=SENT, auth_code="", auth_amount=0, captured=0, credited=0,
)  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    book.save(RECORD)
    found = book.find(XID.hex()[:8])
    assert found == RECORD
    assert found.purchase_state().trans_ids == TRANS_IDS


def test_a_record_of_a_development_snapshot_is_read(tmp_path: Path) -> None:
    """Written before the merchant's ID, brand and a refusal were recorded: read with
    none, so its answers are held to the certificate it names (``merchant_signer``)."""
    path = tmp_path / "purchases.json"
    old = {k: v for k, v in asdict(RECORD).items()
           if k not in ("merchant_brand", "merchant_id", "refusal", "signed_error")}  # fmt: skip
    path.write_text(json.dumps([old]))
    (found,) = PurchaseBook(path).all()
    assert (found.merchant_id, found.merchant_brand, found.refusal) == ("", "", "")
    assert found.signed_error == ""  # a NOT_BOUGHT recorded before it kept the statement
    assert found.purchase_state().merchant is None
    named = replace(RECORD, merchant_brand="setpay", merchant_id="m-1")
    assert named.purchase_state().merchant is not None
    assert named.purchase_state().merchant_thumb == bytes.fromhex(RECORD.merchant_thumb)


def test_a_merchants_signed_statement_is_kept_and_read_back(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    denied = replace(
        RECORD, completion="NOT_BOUGHT", refusal="ERROR_CODE_UNKNOWN_XID",
        signed_error=base64.b64encode(b"\x00signed bytes\xff").decode(),
    )  # fmt: skip
    book.save(denied)
    assert book.all() == [denied]
    assert json.loads((tmp_path / "purchases.json").read_text())[0]["signed_error"] == (
        denied.signed_error
    )


def test_a_refusal_is_recorded_with_its_code(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    refused = replace(RECORD, completion=REFUSED, refusal="ERROR_CODE_DIGEST_MISMATCH")
    book.save(RECORD)
    book.save(refused)
    assert book.all() == [refused]
    assert refused.answered


# Enough saves that two processes overlap many times (each is a read, a write and an
# fsync): without the lock, records were lost in every run of 2 x 100.
SAVES_PER_PROCESS = 60


def _save_many(path: str, start: multiprocessing.synchronize.Barrier) -> None:
    """One wallet command after another: each saves a purchase of its own."""
    book = PurchaseBook(Path(path))
    start.wait()
    for _ in range(SAVES_PER_PROCESS):
        xid = os.urandom(32)
        ids = base64.b64encode(common_pb2.TransIDs(xid=xid, lid_c=b"c").SerializeToString())
        book.save(replace(RECORD, xid=xid.hex(), trans_ids=ids.decode()))


def test_two_processes_saving_at_once_lose_no_record(tmp_path: Path) -> None:
    # Two real processes, as two `setpay wallet` commands run from two shells would be.
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    path = str(tmp_path / "purchases.json")
    workers = [spawn.Process(target=_save_many, args=(path, start)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert len(PurchaseBook(Path(path)).all()) == 2 * SAVES_PER_PROCESS


def test_an_inquiry_holds_the_answer_to_the_amount_agreed() -> None:
    """The state an inquiry is opened with carries the agreed amount, in the currency's
    own exponent, so an InqRes reporting more than was agreed is refused
    (``setcore.purchase_answer``), as a PRes is."""
    agreed = RECORD.purchase_state().purch_amt
    assert agreed == common_pb2.CurrencyAmount(currency=978, amount=1250, exp10=2)
    yen = replace(RECORD, currency=392, amount=1250).purchase_state().purch_amt
    assert yen == common_pb2.CurrencyAmount(currency=392, amount=1250, exp10=0)


@pytest.mark.parametrize(
    ("damaged", "reason"),
    [
        ({**asdict(RECORD), "xid": 5}, "xid is not str"),
        ({**asdict(RECORD), "amount": "1250"}, "amount is not int"),
        ({**asdict(RECORD), "captured": True}, "captured is not int"),
        ({**asdict(RECORD), "xid": ""}, "no XID"),
        ({**asdict(RECORD), "merchant_thumb": "not hex"}, "non-hexadecimal"),
        ({**asdict(RECORD), "trans_ids": "AAAA////"}, "TransIDs"),
        ({**asdict(RECORD), "trans_ids": "not base64!"}, "base64"),
        ({**asdict(RECORD), "merchant_id": "m-1"}, "ID or brand without the other"),
        ({**asdict(RECORD), "merchant_brand": "setpay"}, "ID or brand without the other"),
        ({**asdict(RECORD), "signed_error": "not base64!"}, "signed_error is not base64"),
        ({**asdict(RECORD), "signed_error": 5}, "signed_error is not str"),
        ("a purchase", "not a JSON object"),
    ],
)
def test_a_damaged_record_is_refused_naming_the_file(
    tmp_path: Path, damaged: object, reason: str
) -> None:
    # Written by hand or by another program: the wallet says the file is unreadable
    # rather than stopping with a stack trace when it finds or inquires about a purchase.
    path = tmp_path / "purchases.json"
    good = asdict(replace(RECORD, xid="cd" * 32))
    path.write_text(json.dumps([good, damaged]))
    book = PurchaseBook(path)
    with pytest.raises(ConfigError, match=reason) as caught:
        book.find(XID.hex()[:8])
    assert str(path) in str(caught.value)
    with pytest.raises(ConfigError, match=reason):
        book.all()
