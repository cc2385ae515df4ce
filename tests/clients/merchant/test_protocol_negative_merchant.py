"""The merchant's own checks of PInitReq and InqReq (SET-PROTOCOL.md 5.1, 5.7), each
broken alone through the running merchant: a PInitReq for an order kept for another
brand than the one the wallet picked, and an InqReq from the cardholder who paid, signed,
for the right XID, whose other TransIDs are not the order's. Each is a signed SET Error
with its own code, and the order is as it was."""

from __future__ import annotations

from clients.merchant.records import Money, OrderState
from clients.wallet.credentials import card_credentials
from setcore.error_message import open_error
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki.roles import MERCHANT
from setcore.purchase import PurchaseState, build_inquiry_request, build_pinit_request
from setpay.v1 import common_pb2, purchase_pb2
from tests.cards import VISA
from tests.clients.bank_support import EUR, WALLET_PASSPHRASE, RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

from .test_merchant_service import SERVICE, _caller


def test_a_pinit_for_an_order_kept_for_another_brand_is_refused(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-neg-order-brand")
    lid_m = new_id()[:8]
    merchant.store.add_offer(lid_m, b"one book", Money(EUR, 500), "otherbrand")
    # The wallet picks the merchant's own brand: the first check passes, the order's fails.
    request, state = build_pinit_request(PAN(VISA), "setpay", b"lid-c", lid_m=lid_m)
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    response = caller.call(
        f"{SERVICE}/PInit", request.SerializeToString(), purchase_pb2.PInitResponse, deadline=5
    )
    assert response.WhichOneof("result") == "error"
    error = open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert merchant.store.offer(lid_m).brand_id == "otherbrand"  # kept, not offered


def test_an_inquiry_naming_other_transaction_ids_than_the_orders_is_refused(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-neg-inq-ids")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 300))
    xid = bytes.fromhex(record.xid)
    order = merchant.store.order(xid)
    ids = order.trans_ids_proto()
    other = common_pb2.TransIDs()
    other.CopyFrom(ids)
    other.lid_c = ids.lid_c + b"-2"  # the same XID, another LID-C
    card = wallet.card(WALLET_PASSPHRASE).card()
    config = wallet.config
    credentials = card_credentials(wallet.backend, config.key_label, config.chain, card)
    request, inquiry = build_inquiry_request(credentials, PurchaseState(b"", b"", other, b""))
    caller = _caller(merchant.port, config.require_merchant().channel().ca_pem or b"")
    response = caller.call(
        f"{SERVICE}/Inquiry", request.SerializeToString(), purchase_pb2.InquiryResponse,
        deadline=5,
    )  # fmt: skip
    assert response.WhichOneof("result") == "error"
    error = open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid,
        request=inquiry.request_digest,
    )  # fmt: skip
    assert error.code == ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH
    assert merchant.store.order(xid).state is order.state
    assert order.state is not OrderState.INITIATED
