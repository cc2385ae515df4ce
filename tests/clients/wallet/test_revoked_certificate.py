"""A wallet whose certificate its CA revoked says so, and sends no purchase.

Against the real bank and merchant: the gateway would refuse the PI, but only after the
merchant had taken the order, and the cardholder would hear a rejected order with no
reason (a PRes carries none). The wallet checks its own certificate against the
revocation data it fetches for the purchase, before PInit and again before the PReq.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import ClientError
from clients.merchant.records import OrderState
from clients.merchant.runtime import Merchant
from clients.revocation import RevocationFeed
from clients.wallet.credentials import card_credentials
from clients.wallet.purchases import PurchaseBook, Shopper
from clients.wallet.runtime import Wallet
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.test_purchase_flow import offer

# What ``setpay wallet`` exits with for a refusal or a failure before the PReq left.
REFUSED_OR_FAILED = 1
REGISTER_AGAIN = "register the card again with `setpay wallet register --card CARD.json`"

# The Merchant CA gives a merchant ID once: each test's merchant has one of its own.
_MERCHANTS = itertools.count()


@pytest.fixture
def merchant(make_merchant: MerchantFactory) -> Merchant:
    return make_merchant(f"m-revoked-wallet-{next(_MERCHANTS)}")


@pytest.fixture
def wallet(bank: RunningBank, merchant: Merchant, tmp_path: Path) -> Iterator[Wallet]:
    """A wallet with a registered card, buying from ``merchant``."""
    made = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{merchant.port}")
    yield made
    made.close()


def _shopper(wallet: Wallet, revocation: RevocationFeed) -> Shopper:
    """The wallet's shopper, with the revocation feed given."""
    config = wallet.config
    card = wallet.card(WALLET_PASSPHRASE).card()
    credentials = card_credentials(wallet.backend, config.key_label, config.chain, card)
    wallet.trust.add_certificates(credentials.chain)
    book = PurchaseBook(config.purchases_file)
    return Shopper(credentials, card, wallet.trust, revocation, book, config.brand_id)


def _thumb(wallet: Wallet) -> bytes:
    """The certificate a purchase is signed with now."""
    config = wallet.config
    card = wallet.card(WALLET_PASSPHRASE).card()
    return card_credentials(wallet.backend, config.key_label, config.chain, card).signature_thumb


def test_a_revoked_certificate_buys_nothing_and_says_so(
    bank: RunningBank,
    merchant: Merchant,
    wallet: Wallet,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    thumb = _thumb(wallet)
    bank.authority.revoke(thumb=thumb)
    initiation = offer(merchant, 1700)
    orders_before = merchant.store.orders()

    status, out, err = run_cli(
        ["wallet", "--dir", str(wallet.config.base_dir), "purchase",
         "--lid-m", initiation.lid_m.hex(), "--description", initiation.description.decode(),
         "--amount", "1700"],
        capsys,
    )  # fmt: skip

    assert (status, out) == (REFUSED_OR_FAILED, ""), out
    assert err.startswith(f"setpay wallet: the certificate {thumb.hex()[:16]} of card ")
    assert "is revoked by its Cardholder CA: no purchase request was sent" in err
    assert REGISTER_AGAIN in err
    # Nothing reached the merchant (a PInit opens an order), nothing is recorded here.
    assert merchant.store.orders() == orders_before
    assert PurchaseBook(wallet.config.purchases_file).all() == []


def test_a_certificate_revoked_during_pinit_sends_no_preq(
    bank: RunningBank, merchant: Merchant, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked while the PInit is at the merchant: the revocation data fetched again for
    the PInitRes lists it, and no PReq (no PI) follows."""
    thumb = _thumb(wallet)
    initiation = offer(merchant, 1800)
    answer_pinit = merchant.checkout.pinit

    def revoking_first(request: purchase_pb2.PInitRequest) -> purchase_pb2.PInitResponse:
        bank.authority.revoke(thumb=thumb)
        return answer_pinit(request)

    monkeypatch.setattr(merchant.checkout, "pinit", revoking_first)
    authority, brand = wallet.authority, wallet.config.brand_id
    # Fetched at every check: the PInitRes's check then installs the CRL naming it.
    feed = RevocationFeed(wallet.trust, lambda: authority.revocation(brand), interval=0.0)
    purchase = _shopper(wallet, feed).purchase

    with pytest.raises(ClientError, match="is revoked by its Cardholder CA") as refused:
        purchase(wallet.config.require_merchant(), initiation)

    assert thumb.hex()[:16] in str(refused.value) and REGISTER_AGAIN in str(refused.value)
    (order,) = merchant.store.orders()  # the PInit's, never paid
    assert order.state is OrderState.INITIATED and order.pi is None
    assert PurchaseBook(wallet.config.purchases_file).all() == []
