"""A SHED purchase once more: what it blocks, the way out, what settles it, what is kept.

Another purchase of the same order is refused only at the merchant the SHED one was made
with (an LID-M is the merchant's own number: another merchant's order of the same number
is another order), checked once the PInitRes names the merchant, before the PReq is
built; the cardholder may buy the order again all the same, naming the SHED purchase
(``despite``), which stays recorded. A signed UNKNOWN_XID settling a SHED purchase keeps
the merchant's signed Error. A SHED state the wallet cannot record is an outcome unknown,
not a SHED purchase the user is told to ask about. Real bank, gateway and merchants; only
the merchant's Purchase (and Inquiry) handler is wrapped.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli.purchase_lines import record_line
from clients.errors import (
    ClientError,
    PurchaseNotRead,
    PurchaseOutcomeUnknown,
    ShedUnsettled,
    UnknownOrder,
)
from clients.merchant import checkout as checkout_module
from clients.merchant import servicer as servicer_module
from clients.merchant.records import Money, OrderState
from clients.merchant.runtime import Merchant
from clients.peers import PeerConfig
from clients.transport import RetryPolicy
from clients.wallet import purchases
from clients.wallet.merchant_answers import NOT_BOUGHT, SHED, outcome_fields
from clients.wallet.purchases import SENT, Initiation, PurchaseBook, PurchaseRecord
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, fail
from setcore.purchase import build_pinit_request, build_purchase_request, open_pinit_response
from setcore.purchase_answer import MerchantIdentity
from setpay.v1 import common_pb2, purchase_pb2
from tests.clients.bank_support import EUR, WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.transport_support import shed_status
from tests.clients.wallet.test_purchase_book import RECORD

QUICK = RetryPolicy(attempts=3, first_backoff=0.01, max_backoff=0.02)
# Two merchants numbering their orders alike.
LID_M = b"order-01"
AMOUNT = 100
PERFORMED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
FAILED, OUTCOME_UNKNOWN = 1, 4


class Shedding:
    """The merchants' Purchase (and, if asked, Inquiry) answered shed unread while ``on``;
    ``read`` first has the real handler do its work (a merchant that lies)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, read: bool = False) -> None:
        self.on = True
        self.purchases = 0
        real = servicer_module.MerchantServicer.Purchase

        def purchase(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
            self.purchases += 1
            if not self.on:
                return real(servicer, request, context)
            if read:
                real(servicer, request, context)
            context.abort_with_status(shed_status(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.01))

        monkeypatch.setattr(servicer_module.MerchantServicer, "Purchase", purchase)
        monkeypatch.setattr(purchases, "PURCHASE_RETRIES", QUICK)


def _offered(*merchants: Merchant) -> Initiation:
    for merchant in merchants:
        merchant.store.add_offer(LID_M, b"a lamp", Money(EUR, AMOUNT), "setpay")
    return Initiation(LID_M, b"a lamp", EUR, AMOUNT)


def _at(wallet: Wallet, merchant: Merchant) -> PeerConfig:
    return replace(wallet.config.require_merchant(), target=f"127.0.0.1:{merchant.port}")


def _shed_one(wallet: Wallet, merchant: Merchant, initiation: Initiation) -> str:
    """A purchase the merchant sheds: its id, recorded SHED."""
    with pytest.raises(PurchaseNotRead) as shed:
        wallet.shopper(WALLET_PASSPHRASE).purchase(_at(wallet, merchant), initiation)
    [kept] = PurchaseBook(wallet.config.purchases_file).all()
    assert kept.completion == SHED
    return shed.value.short_id


def test_another_merchants_order_of_the_same_lid_m_is_bought(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    shedding = Shedding(monkeypatch)
    first, other = make_merchant("m-shed-first"), make_merchant("m-shed-other")
    wallet = make_wallet(first)
    initiation = _offered(first, other)
    shed = _shed_one(wallet, first, initiation)
    shedding.on = False
    first.close()  # gone for good: nothing will settle its SHED purchase
    record = wallet.shopper(WALLET_PASSPHRASE).purchase(_at(wallet, other), initiation)
    assert record.completion == PERFORMED
    (order,) = other.store.orders()
    assert order.state is OrderState.AUTHORIZED
    book = PurchaseBook(wallet.config.purchases_file)
    assert [(r.short_id, r.completion) for r in book.all()] == [
        (shed, SHED),
        (record.short_id, PERFORMED),
    ]


def test_the_same_merchants_order_is_refused_after_its_pinitres_before_any_preq(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    Shedding(monkeypatch)
    merchant = make_merchant("m-again")
    wallet = make_wallet(merchant)
    initiation = _offered(merchant)
    shed = _shed_one(wallet, merchant, initiation)
    pinits: list[str] = []
    built: list[str] = []
    real_open, real_build = open_pinit_response, build_purchase_request

    def opening(*args: Any, **kwargs: Any) -> Any:
        opened = real_open(*args, **kwargs)
        pinits.append("PInitRes")
        return opened

    def building(*args: Any, **kwargs: Any) -> Any:
        built.append("PReq")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(purchases, "open_pinit_response", opening)
    monkeypatch.setattr(purchases, "build_purchase_request", building)
    book = PurchaseBook(wallet.config.purchases_file)
    written = wallet.config.purchases_file.read_bytes()
    with pytest.raises(ShedUnsettled) as refused:
        wallet.shopper(WALLET_PASSPHRASE).purchase(_at(wallet, merchant), initiation)
    # The merchant was asked who it is (its PInitRes verified), nothing was signed for it.
    assert (pinits, built) == (["PInitRes"], [])
    assert refused.value.short_id == shed
    assert wallet.config.purchases_file.read_bytes() == written
    assert [r.completion for r in book.all()] == [SHED]


def test_the_order_is_bought_despite_a_shed_purchase_named_and_the_shed_one_kept(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shedding = Shedding(monkeypatch)
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    merchant = make_merchant("m-despite")
    wallet = make_wallet(merchant)
    _offered(merchant)
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "purchase", "--lid-m", LID_M.hex(),
            "--description", "a lamp", "--amount", str(AMOUNT)]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (OUTCOME_UNKNOWN, "")  # the card may be authorized
    book = PurchaseBook(wallet.config.purchases_file)
    [kept] = book.all()
    assert kept.completion == SHED and f"inquire {kept.short_id}" in err
    shedding.on = False
    # Refused without naming it, exit 1, no PReq; told the way out.
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (FAILED, "")
    assert f"`--despite {kept.short_id}`" in err and "may pay it twice" in err
    assert shedding.purchases == QUICK.attempts
    # Named: bought, the SHED purchase still recorded for an inquiry to settle.
    status, out, err = run_cli([*argv, "--despite", kept.short_id], capsys)
    assert (status, err) == (0, "")
    assert [r.completion for r in book.all()] == [SHED, PERFORMED]
    assert out == record_line(book.all()[1]) + "\n"


@pytest.mark.parametrize(
    ("named", "refusal"),
    [
        ("ffffffff", "no such purchase"),
        ("sent", "is SENT, not an unsettled"),
        ("other-order", "is of another order"),
    ],
)
def test_despite_naming_no_shed_purchase_of_this_order_is_refused_before_pinit(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    named: str,
    refusal: str,
) -> None:
    Shedding(monkeypatch)
    merchant = make_merchant(f"m-named-{named}")
    wallet = make_wallet(merchant)
    initiation = _offered(merchant)
    shed = _shed_one(wallet, merchant, initiation)
    book = PurchaseBook(wallet.config.purchases_file)
    [kept] = book.all()
    other = Initiation(b"order-02", b"a lamp", EUR, AMOUNT)
    merchant.store.add_offer(other.lid_m, b"a lamp", Money(EUR, AMOUNT), "setpay")
    named_xid = {"ffffffff": "ffffffff", "sent": "aa" * 32, "other-order": shed}[named]
    buying = other if named == "other-order" else initiation
    if named == "sent":
        book.add(replace(kept, xid="aa" * 32, completion=SENT))
    pinits: list[str] = []
    real_build = build_pinit_request

    def building(*args: Any, **kwargs: Any) -> Any:
        pinits.append("PInitReq")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(purchases, "build_pinit_request", building)
    written = wallet.config.purchases_file.read_bytes()
    with pytest.raises((ClientError, UnknownOrder), match=refusal):
        wallet.shopper(WALLET_PASSPHRASE).purchase(
            _at(wallet, merchant), buying, despite=[named_xid[:8]]
        )
    assert pinits == []  # nothing sent
    assert wallet.config.purchases_file.read_bytes() == written


def test_despite_naming_another_merchants_shed_purchase_is_refused_before_any_preq(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    shedding = Shedding(monkeypatch)
    first, other = make_merchant("m-one"), make_merchant("m-two")
    wallet = make_wallet(first)
    initiation = _offered(first, other)
    shed = _shed_one(wallet, first, initiation)
    shedding.on = False
    written = wallet.config.purchases_file.read_bytes()
    with pytest.raises(ClientError, match="made with another merchant") as refused:
        wallet.shopper(WALLET_PASSPHRASE).purchase(_at(wallet, other), initiation, despite=[shed])
    assert not isinstance(refused.value, ShedUnsettled)
    assert shedding.purchases == QUICK.attempts  # no PReq reached the other merchant
    assert wallet.config.purchases_file.read_bytes() == written


def test_a_signed_unknown_xid_is_kept_and_shown_as_the_merchants_statement(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A merchant that read the PReq, had the card authorized, answered it shed, then
    # signs that it holds no such purchase: its signed statement is the cardholder's.
    Shedding(monkeypatch, read=True)
    sent: list[bytes] = []
    real_inquiry = servicer_module.MerchantServicer.Inquiry

    def deny(self: Any, request: Any) -> Any:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "no purchase for this XID")

    def inquiry(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
        answer = real_inquiry(servicer, request, context)
        sent.append(answer.error.signed_error)
        return answer

    monkeypatch.setattr(checkout_module.Checkout, "inquiry", deny)
    monkeypatch.setattr(servicer_module.MerchantServicer, "Inquiry", inquiry)
    merchant = make_merchant("m-denies")
    wallet = make_wallet(merchant)
    shed = _shed_one(wallet, merchant, _offered(merchant))
    settled = wallet.shopper(WALLET_PASSPHRASE, inquiring=shed).inquire(
        wallet.config.require_merchant(), shed
    )
    (order,) = merchant.store.orders()
    assert order.state is OrderState.AUTHORIZED  # what the merchant denies
    assert (settled.completion, settled.refusal) == (NOT_BOUGHT, "ERROR_CODE_UNKNOWN_XID")
    [signed] = sent
    assert signed and base64.b64decode(settled.signed_error) == signed  # as it came
    assert PurchaseBook(wallet.config.purchases_file).all() == [settled]
    line = record_line(settled)
    assert line.startswith(f"{shed}  NOT_BOUGHT  UNKNOWN_XID  amount {AMOUNT} ")
    assert "nothing was bought" not in line
    assert "states, signed," in line and "kept in purchases.json" in line
    assert "check the card statement" in line
    # A record without the statement (written before it was kept) says so.
    assert "not kept" in record_line(replace(settled, signed_error=""))


def test_a_shed_state_not_recorded_is_an_outcome_unknown_left_sent(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    Shedding(monkeypatch)

    def full_disk(self: PurchaseBook, read: Any, record: Any) -> Any:
        raise OSError(28, "No space left on device")

    merchant = make_merchant("m-full-disk")
    wallet = make_wallet(merchant)
    initiation = _offered(merchant)
    monkeypatch.setattr(PurchaseBook, "save_unless_changed", full_disk)
    with pytest.raises(PurchaseOutcomeUnknown) as unknown:
        wallet.shopper(WALLET_PASSPHRASE).purchase(_at(wallet, merchant), initiation)
    # Not PurchaseNotRead: its record says SENT, which no signed UNKNOWN_XID settles.
    assert type(unknown.value) is PurchaseOutcomeUnknown
    [kept] = PurchaseBook(wallet.config.purchases_file).all()
    assert kept.completion == SENT
    told = str(unknown.value)
    assert "shed it unread" in told and "not recorded so" in told
    assert "card may be authorized" in told and f"inquire {kept.short_id}" in told


def test_an_inqres_after_not_bought_drops_the_statement() -> None:
    # An InqRes replaces the state and what it rested on (``outcome_fields``).
    payload = purchase_pb2.PResPayload(completion_code=purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED)
    data = purchase_pb2.PResData(payloads=[payload])
    assert outcome_fields(data)["signed_error"] == ""


# The book's own refusal, one merchant key at a time (no bank needed).
NAMED = MerchantIdentity("setpay", "m-lamps")
RENEWED_THUMB, OTHER_THUMB = b"\x0a" * 32, b"\x0b" * 32
RECORD_THUMB = bytes.fromhex(RECORD.merchant_thumb)


def _shed(xid: bytes, lid_m: bytes = LID_M, *, named: bool = True) -> PurchaseRecord:
    ids = common_pb2.TransIDs(xid=xid, lid_c=b"c", lid_m=lid_m).SerializeToString()
    record = replace(
        RECORD, xid=xid.hex(), trans_ids=base64.b64encode(ids).decode(), completion=SHED
    )
    if named:
        record = replace(record, merchant_brand=NAMED.brand_id, merchant_id=NAMED.merchant_id)
    return record


def _book(tmp_path: Path, *records: PurchaseRecord) -> PurchaseBook:
    book = PurchaseBook(tmp_path / "purchases.json")
    for record in records:
        book.add(record)
    return book


def test_a_shed_purchase_blocks_its_merchant_by_id_whatever_certificate_signs_now(
    tmp_path: Path,
) -> None:
    book = _book(tmp_path, _shed(b"\x01" * 32))
    with pytest.raises(ShedUnsettled) as refused:
        book.refuse_shed(LID_M, NAMED, RENEWED_THUMB)  # renewed: same merchant ID
    assert refused.value.short_id == "01010101"
    book.refuse_shed(LID_M, MerchantIdentity("setpay", "m-other"), RECORD_THUMB)
    book.refuse_shed(LID_M, MerchantIdentity("other-brand", "m-lamps"), RECORD_THUMB)
    book.refuse_shed(b"order-02", NAMED, RENEWED_THUMB)


def test_a_shed_purchase_recorded_without_its_merchant_id_blocks_by_certificate(
    tmp_path: Path,
) -> None:
    book = _book(tmp_path, _shed(b"\x02" * 32, named=False))
    with pytest.raises(ShedUnsettled):
        book.refuse_shed(LID_M, NAMED, RECORD_THUMB)
    book.refuse_shed(LID_M, NAMED, OTHER_THUMB)


def test_despite_lifts_only_the_shed_purchases_it_names(tmp_path: Path) -> None:
    book = _book(tmp_path, _shed(b"\x03" * 32), _shed(b"\x04" * 32))
    first = book.shed_despite(["03030303"], LID_M)
    assert first == {"03" * 32}
    with pytest.raises(ShedUnsettled) as refused:
        book.refuse_shed(LID_M, NAMED, RENEWED_THUMB, first)
    assert refused.value.short_id == "04040404"
    both = book.shed_despite(["03030303", "0404"], LID_M)
    book.refuse_shed(LID_M, NAMED, RENEWED_THUMB, both)
    assert [r.completion for r in book.all()] == [SHED, SHED]  # kept, both


def test_despite_is_refused_for_a_purchase_of_another_merchant(tmp_path: Path) -> None:
    book = _book(tmp_path, _shed(b"\x05" * 32))
    despite = book.shed_despite(["05050505"], LID_M)
    with pytest.raises(ClientError, match="made with another merchant") as refused:
        book.refuse_shed(LID_M, MerchantIdentity("setpay", "m-other"), RENEWED_THUMB, despite)
    assert not isinstance(refused.value, ShedUnsettled)
