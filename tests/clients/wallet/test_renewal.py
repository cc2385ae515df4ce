"""``renew``: a new certificate for the registered card, against the real Cardholder CA.

The card buys with the new certificate once it is stored; a purchase made before is
asked about with the certificate that paid for it; a revoked certificate is not renewed;
a renewal whose answer was lost resumes as a registration does.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.identity import certified_versions
from clients.merchant.config import AnswerMode
from clients.merchant.runtime import Merchant
from clients.wallet.credentials import card_credentials
from clients.wallet.runtime import Wallet
from clients.wallet.vault import CardSecrets, open_vault, seal
from setcore.errors import PeerError
from setcore.profiles import EC
from setcore.registration import REQUEST_PENDED, spki_of
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.conftest import MerchantFactory
from tests.clients.test_purchase_flow import buy, offer
from tests.clients.wallet.test_registration_resume import _answer_lost, _registrar

APPROVED = "AUTH_CODE_APPROVED"


# The Merchant CA gives a merchant ID once: each test's merchant has one of its own.
_MERCHANTS = itertools.count()


@pytest.fixture
def merchant(make_merchant: MerchantFactory) -> Merchant:
    return make_merchant(f"m-renewal-{next(_MERCHANTS)}", AnswerMode.AFTER_AUTHORIZATION)


@pytest.fixture
def wallet(bank: RunningBank, merchant: Merchant, tmp_path: Path) -> Iterator[Wallet]:
    """A wallet with a registered card, buying from ``merchant``."""
    made = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{merchant.port}")
    yield made
    made.close()


def _current_thumb(wallet: Wallet) -> bytes:
    """The certificate a purchase is signed with now."""
    card = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).card()
    config = wallet.config
    return card_credentials(wallet.backend, config.key_label, config.chain, card).signature_thumb


def _versions(wallet: Wallet) -> list[int]:
    """The versions of the wallet's signature key, certified or not."""
    label = wallet.config.key_label
    return sorted(key.version for key in wallet.backend.list_keys() if key.label == label)


def _certified(wallet: Wallet) -> int:
    return len(list(certified_versions(wallet.backend, wallet.config.key_label)))


def test_renew_then_buy_with_the_new_certificate(merchant: Merchant, wallet: Wallet) -> None:
    before = buy(wallet, offer(merchant, 1200))
    old = _current_thumb(wallet)

    done = wallet.registrar(WALLET_PASSPHRASE).renew(EC)

    assert done.complete and done.certificate_thumb != old
    assert _current_thumb(wallet) == done.certificate_thumb
    assert _certified(wallet) == 2  # the old version is kept for inquiries
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is None and held.pan_secret is not None
    after = buy(wallet, offer(merchant, 1300))
    assert (before.auth_code, after.auth_code) == (APPROVED, APPROVED)
    # The merchant recorded the new certificate as the one that paid.
    order = merchant.store.order(bytes.fromhex(after.xid))
    assert order.cardholder_thumb == done.certificate_thumb


def test_an_inquiry_about_a_purchase_before_the_renewal_is_signed_by_its_certificate(
    merchant: Merchant, wallet: Wallet
) -> None:
    before = buy(wallet, offer(merchant, 2100))
    assert wallet.registrar(WALLET_PASSPHRASE).renew(EC).complete
    target = wallet.config.require_merchant()

    answered = wallet.shopper(WALLET_PASSPHRASE, inquiring=before.short_id).inquire(
        target, before.short_id
    )

    assert answered.auth_code == APPROVED
    # Signed by the new certificate, the same inquiry is not the purchaser's.
    with pytest.raises(PeerError):
        wallet.shopper(WALLET_PASSPHRASE).inquire(target, before.short_id)


def test_renewing_a_revoked_certificate_is_refused(bank: RunningBank, wallet: Wallet) -> None:
    bank.authority.revoke(thumb=_current_thumb(wallet))
    versions = _versions(wallet)

    with pytest.raises(RegistrationError) as refused:
        wallet.registrar(WALLET_PASSPHRASE).renew(EC)

    message = str(refused.value)
    assert "is revoked" in message and "setpay wallet register --card" in message
    assert open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending is None
    assert _versions(wallet) == versions


def test_a_certificate_revoked_while_it_is_renewed_is_refused_by_the_ca(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked after the wallet checked its revocation data: the CA refuses the renewal
    (REVOKED_CERTIFICATE), and the wallet takes back the new key and pending state."""
    current, versions = _current_thumb(wallet), _versions(wallet)
    real = wallet.authority.card_c_init

    def revoked_meanwhile(
        request: registration_pb2.CardCInitRequest, *, sent: bytes | None = None
    ) -> registration_pb2.CardCInitResponse:
        bank.authority.revoke(thumb=current)
        return real(request, sent=sent)

    monkeypatch.setattr(wallet.authority, "card_c_init", revoked_meanwhile)
    with pytest.raises(RegistrationError) as refused:
        wallet.registrar(WALLET_PASSPHRASE).renew(EC)

    assert "is revoked" in str(refused.value) and "register" in str(refused.value)
    assert isinstance(refused.value.__cause__, PeerError)
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is None and held.pan_secret is not None
    assert _versions(wallet) == versions


def test_a_revoked_certificate_is_replaced_by_registering_again(
    bank: RunningBank, merchant: Merchant, wallet: Wallet
) -> None:
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    old = _current_thumb(wallet)
    bank.authority.revoke(thumb=old)

    done = wallet.registrar(WALLET_PASSPHRASE).register(held.pan, held.expiry, EC)

    assert done.complete and _current_thumb(wallet) == done.certificate_thumb != old
    assert buy(wallet, offer(merchant, 700)).auth_code == APPROVED


def test_register_on_a_registered_wallet_says_to_renew(bank: RunningBank, wallet: Wallet) -> None:
    pan, expiry = bank.new_card()
    with pytest.raises(RegistrationError, match="setpay wallet renew"):
        wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)


def test_a_renewal_whose_answer_is_lost_resumes(
    merchant: Merchant, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CertReq reached the CA and the answer was lost: the card keeps buying with the
    current certificate, ``register`` points at ``renew``, and the next renew gets the
    certificate the CA issued, for the key that request carried."""
    old = _current_thumb(wallet)
    real = wallet.authority.cert
    monkeypatch.setattr(wallet.authority, "cert", _answer_lost(real))
    with pytest.raises(TransportError):
        wallet.registrar(WALLET_PASSPHRASE).renew(EC)
    monkeypatch.setattr(wallet.authority, "cert", real)
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is not None and "cert_request" in held.pending
    new_version = int(held.pending["key_version"])

    assert _current_thumb(wallet) == old
    assert buy(wallet, offer(merchant, 800)).auth_code == APPROVED
    with pytest.raises(RegistrationError, match="setpay wallet renew"):
        wallet.registrar(WALLET_PASSPHRASE).register(held.pan, held.expiry, EC)

    done = wallet.registrar(WALLET_PASSPHRASE).renew(EC)

    assert done.complete and _current_thumb(wallet) == done.certificate_thumb != old
    key = wallet.backend.get(wallet.config.key_label, new_version)
    assert wallet.backend.certificate(key) is not None
    assert buy(wallet, offer(merchant, 900)).auth_code == APPROVED


def test_a_renewal_that_never_reached_the_ca_is_made_again(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending renewal the CA holds no request for (a CertInq answered UNKNOWN_LID):
    its key version is destroyed and the card renewed with a new one."""
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    monkeypatch.setattr(wallet.authority, "cert", _unsent)
    with pytest.raises(TransportError):
        wallet.registrar(WALLET_PASSPHRASE).renew(EC)
    monkeypatch.undo()
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None
    label = wallet.config.key_label
    stranded = spki_of(wallet.backend.get(label, int(pending["key_version"])).public_key)
    # As a wallet from before the request's bytes were kept would hold it: only CertInq.
    kept = {k: v for k, v in pending.items() if k not in ("cert_request", "rrpid", "chall_ee3")}
    _seal(wallet, held, kept)

    done = wallet.registrar(WALLET_PASSPHRASE).renew(EC)

    assert done.complete and _current_thumb(wallet) == done.certificate_thumb
    # The stranded version is gone: the old certified one and the renewal's remain.
    keys = [key for key in wallet.backend.list_keys() if key.label == label]
    assert len(keys) == 2 and stranded not in [spki_of(key.public_key) for key in keys]


def test_a_pended_renewal_keeps_the_card_buying_and_finishes_later(
    bank: RunningBank, merchant: Merchant, wallet: Wallet
) -> None:
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    old = _current_thumb(wallet)
    bank.issuer.review(held.pan)

    pended = _registrar(wallet).renew(EC)

    assert pended.status == REQUEST_PENDED and not pended.complete
    assert buy(wallet, offer(merchant, 400)).auth_code == APPROVED
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None
    status = bank.authority.decide_pending(
        base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"]), approve=True
    )
    assert status == registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
    done = _registrar(wallet).renew(EC)
    assert done.complete and _current_thumb(wallet) == done.certificate_thumb != old
    assert buy(wallet, offer(merchant, 500)).auth_code == APPROVED


def _unsent(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
    raise TransportError("CA Cert", "UNAVAILABLE")


def _seal(wallet: Wallet, held: CardSecrets, pending: dict[str, str]) -> None:
    seal(wallet.config.card_file, replace(held, pending=pending), WALLET_PASSPHRASE)
