"""``purchases.json``: what the wallet remembers of its purchases, and a damaged one refused."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.wallet.purchases import SENT, PurchaseBook, PurchaseRecord
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
