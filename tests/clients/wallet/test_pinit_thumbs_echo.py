"""The wallet's purchase refuses a PInitRes whose signed Thumbs echo is not what it sent
(SET-PROTOCOL.md 2.6): a merchant answering as if the PInitReq had named a thumbprint
(one injected on the way) is refused with THUMBS_MISMATCH before any PReq is built,
and nothing is recorded. The wallet sends no Thumbs today: the echo it takes is empty."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from clients.merchant import checkout as checkout_module
from clients.merchant.records import OrderState
from clients.wallet.purchases import PurchaseBook
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.purchase import build_pinit_response
from setpay.v1 import common_pb2, purchase_pb2
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

APPROVED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"


def test_a_pinitres_echoing_thumbs_the_wallet_never_sent_is_refused(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-thumbs-injected")
    wallet = make_wallet(merchant)
    real = build_pinit_response

    def echoing_one_more(
        credentials: Credentials,
        request: purchase_pb2.PInitRequest,
        trans_ids: common_pb2.TransIDs,
        chall_m: bytes,
        gateway_kex_cert: bytes,
        gateway_chain: Sequence[bytes],
    ) -> purchase_pb2.PInitResponse:
        # The merchant signs what it read: a PInitReq naming a thumbprint the wallet's
        # did not.
        injected = purchase_pb2.PInitRequest()
        injected.CopyFrom(request)
        injected.thumbs.thumbs.append(b"\x02" * 32)
        return real(credentials, injected, trans_ids, chall_m, gateway_kex_cert, gateway_chain)

    monkeypatch.setattr(checkout_module, "build_pinit_response", echoing_one_more)
    refused = offer(merchant, 800)
    with pytest.raises(ProtocolError) as caught:
        buy(wallet, refused)
    assert caught.value.code == ErrorCode.ERROR_CODE_THUMBS_MISMATCH
    assert caught.value.reason == "Thumbs not echoed"
    book_file = wallet.config.purchases_file
    assert not book_file.exists() or PurchaseBook(book_file).all() == []
    xid = merchant.store.offer(refused.lid_m).xid
    assert xid is not None and merchant.store.order(xid).state is OrderState.INITIATED

    # The merchant echoing what the wallet sent (nothing): bought.
    monkeypatch.setattr(checkout_module, "build_pinit_response", real)
    bought = buy(wallet, offer(merchant, 800))
    assert bought.completion == APPROVED
    assert [r.xid for r in PurchaseBook(book_file).all()] == [bought.xid]
