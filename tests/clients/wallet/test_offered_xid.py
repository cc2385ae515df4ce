"""A merchant's PInitRes offering the XID of a purchase the wallet already holds.

The wallet files purchases by XID, which the merchant picks. A merchant that offers an
XID the wallet holds (another merchant's, learnt somehow, or its own again) would have
the new purchase replace the record of the earlier one, an authorized purchase perhaps:
a real charge gone from the cardholder's history, and ``inquire`` pointed at the second
merchant. The offer is refused before anything is recorded or sent: no PReq reaches the
merchant, and ``purchases.json`` is left byte for byte as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients.merchant import checkout as checkout_module
from clients.merchant.checkout import Checkout
from clients.merchant.config import AnswerMode
from clients.merchant.records import Order, OrderState
from clients.merchant.runtime import Merchant
from clients.wallet import purchases as purchases_module
from clients.wallet.purchases import PurchaseBook, PurchaseRecord
from clients.wallet.runtime import Wallet
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.pan_scan import pan_like_runs
from tests.clients.test_purchase_flow import buy, offer
from tests.clients.wallet.test_purchase_book_add import _with_xid

APPROVED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"


def _next_xid_is(monkeypatch: pytest.MonkeyPatch, xid: str) -> None:
    """The next PInit any merchant of this process answers offers ``xid`` (its Chall-M,
    and every id after, fresh): the merchant's own choice, signed as any offer is."""
    ids = iter([bytes.fromhex(xid)])
    monkeypatch.setattr(checkout_module, "new_id", lambda: next(ids, None) or new_id())


@pytest.fixture
def preqs_received(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The XID of every PReq a merchant of this process reads, from now on."""
    received: list[bytes] = []
    real = Checkout.purchase

    def counting(
        self: Checkout, request: purchase_pb2.PurchaseRequest, **kwargs: float | None
    ) -> purchase_pb2.PurchaseResponse:
        received.append(request.header.xid)
        return real(self, request, **kwargs)

    monkeypatch.setattr(Checkout, "purchase", counting)
    yield received


def _refused(buying: Callable[[], PurchaseRecord], wallet: Wallet, earlier: PurchaseRecord) -> None:
    """``buying`` is refused for offering ``earlier``'s XID, naming it and no card."""
    with pytest.raises(ProtocolError) as caught:
        buying()
    refusal = caught.value
    assert refusal.code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
    assert f"earlier purchase {earlier.short_id}" in str(refusal)
    pan = wallet.card(WALLET_PASSPHRASE).pan.reveal()
    assert pan not in str(refusal) and pan_like_runs(str(refusal).encode()) == []


def _at(wallet: Wallet, merchant: Merchant) -> Callable[[int], PurchaseRecord]:
    """Buys an order of ``amount`` from ``merchant`` (not the wallet's configured one)."""
    peer = dataclasses.replace(
        wallet.config.require_merchant(), target=f"127.0.0.1:{merchant.port}"
    )
    return lambda amount: wallet.shopper(WALLET_PASSPHRASE).purchase(peer, offer(merchant, amount))


def test_another_merchant_offering_an_earlier_xid_is_refused(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    preqs_received: list[bytes],
) -> None:
    first_shop = make_merchant("m-xid-first", AnswerMode.AFTER_AUTHORIZATION)
    second_shop = make_merchant("m-xid-second", AnswerMode.AFTER_AUTHORIZATION)
    wallet = make_wallet(first_shop)
    first = buy(wallet, offer(first_shop, 2599))
    assert first.completion == APPROVED
    book_file = wallet.config.purchases_file
    held = book_file.read_bytes()
    first_order = first_shop.store.order(bytes.fromhex(first.xid))
    preqs_received.clear()

    _next_xid_is(monkeypatch, first.xid)
    buy_at_second = _at(wallet, second_shop)
    _refused(lambda: buy_at_second(700), wallet, first)

    assert book_file.read_bytes() == held
    assert preqs_received == []
    # The second merchant opened the order under the XID it offered; nothing came of it.
    offered = second_shop.store.order(bytes.fromhex(first.xid))
    assert offered.state is OrderState.INITIATED and offered.pi is None
    assert first_shop.store.order(bytes.fromhex(first.xid)) == first_order

    # The refusal holds nothing up: the next offer, under a fresh XID, is bought.
    second = buy_at_second(700)
    assert second.completion == APPROVED and second.xid != first.xid
    assert [r.xid for r in PurchaseBook(book_file).all()] == [first.xid, second.xid]


def test_the_same_merchant_offering_its_earlier_xid_again_is_refused(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    preqs_received: list[bytes],
) -> None:
    shop = make_merchant("m-xid-again", AnswerMode.AFTER_AUTHORIZATION)
    wallet = make_wallet(shop)
    first = buy(wallet, offer(shop, 1850))
    assert first.completion == APPROVED
    book_file = wallet.config.purchases_file
    held = book_file.read_bytes()
    first_order = shop.store.order(bytes.fromhex(first.xid))
    preqs_received.clear()

    # A merchant whose XIDs repeat (a store restored from a backup, a faulty generator):
    # it signs the earlier XID into the offer, and files the new order under a fresh one
    # (its store holds the earlier order under that XID).
    _next_xid_is(monkeypatch, first.xid)
    real_open = shop.store.open_order

    def open_under_fresh_xid(
        lid_m: bytes, xid: bytes, trans_ids: bytes, chall_m: bytes, signer: bytes | None = None
    ) -> Order:
        return real_open(lid_m, new_id(), trans_ids, chall_m, signer)

    monkeypatch.setattr(shop.store, "open_order", open_under_fresh_xid)
    again = offer(shop, 990)
    _refused(lambda: buy(wallet, again), wallet, first)

    assert book_file.read_bytes() == held
    assert preqs_received == []
    assert shop.store.order(bytes.fromhex(first.xid)) == first_order
    opened = shop.store.offer(again.lid_m).xid
    assert opened is not None and opened.hex() != first.xid
    assert shop.store.order(opened).state is OrderState.INITIATED


def test_the_command_exits_1_naming_the_earlier_purchase(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``setpay wallet purchase``: a failure before the PReq left (exit 1), not an
    outcome unknown (4): nothing was sent, the card cannot have been charged."""
    first_shop = make_merchant("m-xid-cli-first", AnswerMode.AFTER_AUTHORIZATION)
    second_shop = make_merchant("m-xid-cli-second", AnswerMode.AFTER_AUTHORIZATION)
    wallet = make_wallet(first_shop)
    first = buy(wallet, offer(first_shop, 4200))
    held = wallet.config.purchases_file.read_bytes()
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)

    _next_xid_is(monkeypatch, first.xid)
    initiation = offer(second_shop, 300)
    status, out, err = run_cli(
        ["wallet", "--dir", str(wallet.config.base_dir), "purchase",
         "--lid-m", initiation.lid_m.hex(), "--description", initiation.description.decode(),
         "--amount", "300", "--merchant", f"127.0.0.1:{second_shop.port}"],
        capsys,
    )  # fmt: skip

    assert (status, out) == (1, "")
    assert "ERROR_CODE_PI_PREVIOUSLY_USED" in err and f"earlier purchase {first.short_id}" in err
    assert "nothing sent" in err
    pan = wallet.card(WALLET_PASSPHRASE).pan.reveal()
    assert pan not in err and pan_like_runs(err.encode()) == []
    assert wallet.config.purchases_file.read_bytes() == held


def test_an_xid_recorded_by_another_command_after_the_first_check_is_refused(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    preqs_received: list[bytes],
) -> None:
    """Another wallet command records a purchase under the offered XID after this one's
    first check (while it builds its PReq): the SENT record goes in only with the check
    made again under the book's lock, so this purchase is refused, nothing sent, and the
    other command's record is kept."""
    merchant = make_merchant("m-xid-late")
    wallet = make_wallet(merchant)
    book = PurchaseBook(wallet.config.purchases_file)
    real = purchases_module.build_purchase_request  # type: ignore[attr-defined]
    recorded: list[PurchaseRecord] = []

    def building(credentials: Any, offered: Any, *args: Any) -> Any:
        xid = offered.trans_ids.xid.hex()
        other = _with_xid(bytes.fromhex(xid))
        book.add(other)  # the other command, between this one's check and its record
        recorded.append(other)
        return real(credentials, offered, *args)

    monkeypatch.setattr(purchases_module, "build_purchase_request", building)
    with pytest.raises(ProtocolError) as caught:
        buy(wallet, offer(merchant, 700))
    assert caught.value.code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
    assert preqs_received == []
    assert book.all() == recorded
