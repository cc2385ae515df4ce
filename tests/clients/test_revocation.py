"""Revoked certificates are refused: by the merchant (a wallet's) and the wallet (a merchant's);
revocation data held stays in force while the CA cannot be reached."""

from __future__ import annotations

import pytest

from clients.errors import TransportError
from clients.merchant.records import OrderState
from clients.revocation import RevocationFeed
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.pki.roles import PAYMENT_GATEWAY
from setcore.pki.truststore import TrustStore
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


class _Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _FlakyCA:
    """The CA's revocation data, or a transport failure while ``down``."""

    def __init__(self, bank: RunningBank) -> None:
        self._bank = bank
        self.down = False
        self.calls = 0

    def __call__(self) -> tuple[bytes, tuple[bytes, ...]]:
        self.calls += 1
        if self.down:
            raise TransportError("CA GetBrandCRLIdentifier", "UNAVAILABLE")
        data = self._bank.authority.brand_crl_identifier()
        return data.bci, tuple(data.crls)


def test_a_failed_fetch_leaves_the_data_held_in_force(bank: RunningBank) -> None:
    # Every purchase a merchant verifies first asks the feed to be fresh: a CA down for a
    # minute made each of them fail with the CA's transport error (and wait for it),
    # although the BCI held was good for hours yet.
    clock, ca = _Clock(), _FlakyCA(bank)
    trust = TrustStore(bank.pki.root_der)
    feed = RevocationFeed(trust, ca, interval=60.0, clock=clock)
    feed.ensure_fresh()
    held = trust.revocation
    assert held is not None
    ca.down = True
    clock.now = 61.0
    feed.ensure_fresh()  # no error: what is held is still current
    assert trust.revocation is held and ca.calls == 2
    clock.now = 62.0
    feed.ensure_fresh()  # and the dead CA is not asked again on every request
    assert ca.calls == 2
    chain = bank.pki.gateway
    trust.verify_chain(chain.signature_cert, chain.chain, PAYMENT_GATEWAY, "signature")
    # An explicit refresh (data found stale) still says the CA is unreachable.
    with pytest.raises(TransportError):
        feed.refresh()
    ca.down = False
    clock.now = 130.0
    feed.ensure_fresh()
    assert ca.calls == 4


def test_without_data_held_a_failed_fetch_is_an_error(bank: RunningBank) -> None:
    ca = _FlakyCA(bank)
    ca.down = True
    feed = RevocationFeed(TrustStore(bank.pki.root_der), ca, clock=_Clock())
    with pytest.raises(TransportError):
        feed.ensure_fresh()
