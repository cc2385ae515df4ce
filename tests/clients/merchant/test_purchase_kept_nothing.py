"""A PReq whose unsigned parts the gateway would refuse is refused by the merchant, which
keeps nothing of it: OIData naming a card number as its BIN, a PI whose envelope is
sealed for another transaction. Real merchant, wallet and bank: the wallet hears the
merchant's signed refusal (``REFUSED``), the order stays as PInit left it (no OIData, no
PI kept, no AuthReq sent), and no merchant file holds a card number."""

from __future__ import annotations

from typing import Any

import pytest

from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.wallet.purchases import PurchaseBook
from clients.wallet.runtime import Wallet
from setcore import dualsig, purchase
from setcore.dualsig import DualSignedPurchase
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.pan_scan import files_with_pans
from tests.clients.test_purchase_flow import offer


def _refused_and_kept_nothing(merchant: Merchant, wallet: Wallet, code: int) -> None:
    initiation = offer(merchant, 1234)
    with pytest.raises(PeerError) as caught:
        wallet.shopper(WALLET_PASSPHRASE).purchase(wallet.config.require_merchant(), initiation)
    assert caught.value.code == code, caught.value
    (record,) = PurchaseBook(wallet.config.purchases_file).all()
    assert (record.completion, record.refusal) == ("REFUSED", ErrorCode.Name(code))
    order = merchant.store.order(bytes.fromhex(record.xid))
    assert order.state is OrderState.INITIATED
    assert (order.oi_data, order.pi, order.cardholder_thumb, order.auth_request) == (
        None, None, None, None,
    )  # fmt: skip
    assert files_with_pans(merchant.config.base_dir) == {}


def test_oidata_naming_the_card_number_as_its_bin_is_refused_and_not_kept(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = dualsig.build_dual_signed

    def pan_as_bin(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet signs OIData whose BIN is its whole card number; all else is honest.
        backend, key, thumb, certs, oi_data, pi_head, pan_data, *after = args
        oi = purchase_pb2.OIData.FromString(oi_data)
        oi.bin = purchase_pb2.PANData.FromString(pan_data).pan
        changed = oi.SerializeToString()
        return real(backend, key, thumb, certs, changed, pi_head, pan_data, *after, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", pan_as_bin)
    merchant = make_merchant("m-bin-pan")
    _refused_and_kept_nothing(
        merchant, make_wallet(merchant), ErrorCode.ERROR_CODE_DECODING_FAILURE
    )


def test_a_pi_sealed_for_another_transaction_is_refused_and_not_kept(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = dualsig.build_dual_signed

    def other_xid(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        # The wallet seals its PI bound to another XID; all else is honest.
        return real(*args, **{**kwargs, "xid": new_id()})

    monkeypatch.setattr(purchase, "build_dual_signed", other_xid)
    merchant = make_merchant("m-pi-xid")
    _refused_and_kept_nothing(
        merchant, make_wallet(merchant), ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH
    )
