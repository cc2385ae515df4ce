"""An inquiry saves its answer only over the record it asked about.

``Shopper.inquire`` read the purchase's record, asked the merchant, and saved the answer
over whatever the book held by then: run beside the purchase itself (or another
inquiry), an answer to the earlier question (ORDER_RECEIVED, nothing captured) replaced
the newer state another command had saved meanwhile (the AUTHORIZED of the PRes, a
capture another inquiry had learnt of). Now it is saved only over the record it asked
about; else the merchant is asked again about the record as it is, and at worst the
record the book holds is kept.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from google.protobuf.message import Message

from clients.errors import PurchaseOutcomeUnknown, TransportError
from clients.merchant.runtime import Merchant
from clients.transport import Caller
from clients.wallet import merchant_answers, purchases
from clients.wallet.purchases import SENT, PurchaseBook, PurchaseRecord
from clients.wallet.runtime import Wallet
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer
from tests.clients.wallet.test_purchase_book import RECORD

M = TypeVar("M", bound=Message)
AUTHORIZED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
ORDER_RECEIVED = "COMPLETION_CODE_ORDER_RECEIVED"
CAPTURED = "COMPLETION_CODE_CAPTURE_PERFORMED"


class AnswerLost(Caller):
    """The merchant gets the PReq and authorizes; its PRes is lost on the way back."""

    def call(self, method: str, request: bytes, cls: type[M], *, deadline: float) -> M:
        response = super().call(method, request, cls, deadline=deadline)
        if method.endswith("/Purchase"):
            raise TransportError("merchant Purchase", "DEADLINE_EXCEEDED")
        return response


def _book(wallet: Wallet) -> PurchaseBook:
    return PurchaseBook(wallet.config.purchases_file)


def _sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> tuple[Wallet, PurchaseRecord, Merchant]:
    """A purchase the merchant authorized whose PRes was lost: recorded SENT."""
    merchant = make_merchant(name)
    wallet = make_wallet(merchant)
    monkeypatch.setattr(purchases, "Caller", AnswerLost)
    with pytest.raises(PurchaseOutcomeUnknown):
        buy(wallet, offer(merchant, 700))
    monkeypatch.setattr(purchases, "Caller", Caller)
    (sent,) = _book(wallet).all()
    assert sent.completion == SENT
    return wallet, sent, merchant


def test_an_answer_older_than_the_pres_saved_meanwhile_does_not_replace_it(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merchant answered the inquiry ORDER_RECEIVED before it authorized; by the time
    the answer is read, the purchase's PRes saved AUTHORIZED."""
    wallet, sent, _ = _sent(make_merchant, make_wallet, monkeypatch, "m-inq-pres")
    real = merchant_answers.outcome_fields
    answers: list[str] = []

    def earlier_then_real(data: purchase_pb2.PResData) -> dict[str, object]:
        fields = real(data)
        if not answers:
            # The PRes, which the purchase command beside saves now.
            _book(wallet).save(replace(sent, **fields))  # type: ignore[arg-type]
            fields = {**fields, "completion": ORDER_RECEIVED, "auth_code": "", "auth_amount": 0}
        answers.append(str(fields["completion"]))
        return fields

    monkeypatch.setattr(purchases, "outcome_fields", earlier_then_real)
    record = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), sent.short_id
    )
    assert _book(wallet).find(sent.xid).completion == AUTHORIZED
    assert record == _book(wallet).find(sent.xid)
    assert answers == [ORDER_RECEIVED, AUTHORIZED]  # asked again about the newer record


def test_a_capture_another_inquiry_recorded_meanwhile_is_kept(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two inquiries at once, for real: the first's answer (nothing captured) comes back
    after the merchant captured and the second recorded the capture."""
    wallet, sent, merchant = _sent(make_merchant, make_wallet, monkeypatch, "m-inq-inq")
    asked: list[str] = []

    class CaptureMeanwhile(Caller):
        def call(self, method: str, request: bytes, cls: type[M], *, deadline: float) -> M:
            response = super().call(method, request, cls, deadline=deadline)
            asked.append(method)
            if len(asked) == 1:
                monkeypatch.setattr(purchases, "Caller", Caller)
                merchant.settlement.capture(bytes.fromhex(sent.xid))
                other = wallet.shopper(WALLET_PASSPHRASE)
                assert other.inquire(wallet.config.require_merchant(), sent.xid).captured == 700
                monkeypatch.setattr(purchases, "Caller", CaptureMeanwhile)
            return response

    monkeypatch.setattr(purchases, "Caller", CaptureMeanwhile)
    record = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), sent.short_id
    )
    assert _book(wallet).find(sent.xid).captured == 700
    assert record.captured == 700 and record.completion == CAPTURED
    assert len(asked) == 2


def test_save_unless_changed_saves_over_the_record_read(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    book.save(RECORD)
    answered = replace(RECORD, completion=AUTHORIZED, auth_amount=1250)
    assert book.save_unless_changed(RECORD, answered) == answered
    assert book.all() == [answered]


def test_save_unless_changed_keeps_a_record_saved_since(tmp_path: Path) -> None:
    book = PurchaseBook(tmp_path / "purchases.json")
    newer = replace(RECORD, completion=AUTHORIZED, auth_amount=1250)
    book.save(newer)
    older = replace(RECORD, completion=ORDER_RECEIVED)
    assert book.save_unless_changed(RECORD, older) == newer
    assert book.all() == [newer]
    assert (tmp_path / "purchases.json").exists()


def test_save_unless_changed_records_a_purchase_no_longer_held(tmp_path: Path) -> None:
    """As ``save`` does: the answer is about a purchase the wallet made."""
    book = PurchaseBook(tmp_path / "purchases.json")
    answered = replace(RECORD, completion=AUTHORIZED)
    assert book.save_unless_changed(RECORD, answered) == answered
    assert book.all() == [answered]


def test_an_inquiry_that_finds_the_record_changed_at_every_answer_keeps_it(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked ``INQUIRY_ROUNDS`` times, each answer overtaken: the book's record is kept."""
    wallet, sent, _ = _sent(make_merchant, make_wallet, monkeypatch, "m-inq-rounds")
    real = merchant_answers.outcome_fields
    saved: list[PurchaseRecord] = []

    def overtaken(data: purchase_pb2.PResData) -> dict[str, object]:
        fields = real(data)
        meanwhile = replace(sent, **{**fields, "credited": len(saved) + 1})  # type: ignore[arg-type]
        _book(wallet).save(meanwhile)
        saved.append(meanwhile)
        return fields

    monkeypatch.setattr(purchases, "outcome_fields", overtaken)
    record = wallet.shopper(WALLET_PASSPHRASE).inquire(
        wallet.config.require_merchant(), sent.short_id
    )
    assert _book(wallet).find(sent.xid) == saved[-1] == record
    assert len(saved) == 2  # ``INQUIRY_ROUNDS``
