"""Revoked certificates are refused: by the merchant (a wallet's) and the wallet (a merchant's)."""

from __future__ import annotations

import pytest

from clients.merchant.records import OrderState
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer


def test_merchant_refuses_a_revoked_wallet(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-rev-wallet")
    wallet = make_wallet(merchant)
    buy(wallet, offer(merchant, 100))  # accepted while the certificate is good
    key = wallet.backend.get(wallet.config.key_label)
    certificate = wallet.backend.certificate(key)
    assert certificate is not None
    bank.authority.revoke(thumb=thumbprint(certificate))
    # The merchant fetches revocation data every minute; bring the next fetch forward.
    assert merchant.revocation.refresh()
    initiation = offer(merchant, 200)
    with pytest.raises(PeerError) as caught:
        buy(wallet, initiation)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    order = merchant.store.order(merchant.store.offer(initiation.lid_m).xid or b"")
    assert order.state is OrderState.INITIATED  # nothing kept, nothing sent to the gateway


def test_wallet_refuses_a_revoked_merchant(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-rev-merchant")
    bank.authority.revoke(thumb=merchant.credentials.signature_thumb)
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 100)
    with pytest.raises(ProtocolError) as caught:
        buy(wallet, initiation)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    order = merchant.store.order(merchant.store.offer(initiation.lid_m).xid or b"")
    assert order.state is OrderState.INITIATED  # the wallet never sent its PReq
