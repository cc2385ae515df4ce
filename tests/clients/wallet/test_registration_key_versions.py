"""A registration that fails before its CertReq may leave takes back the key it made.

``register`` used to make the new key version before CardCInit and RegForm, and before
the form was filled in, and left it when either failed: every refused or unreachable
attempt left one more version no CA would ever certify (on a token, slots are limited).
It now makes the key once the form is filled in, and destroys it on any failure until
the request is sealed, as ``renew`` does; a request that may have reached the CA keeps
its key, which resuming it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from setcore.errors import ProtocolError
from setcore.pan import MIN_EXPIRY_YEAR
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet

ATTEMPTS = 3


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _versions(wallet: Wallet) -> list[tuple[int, bool]]:
    """Each version of the wallet's signature key, and whether a certificate names it."""
    label = wallet.config.key_label
    return [
        (key.version, wallet.backend.certificate(key) is not None)
        for key in wallet.backend.list_keys()
        if key.label == label
    ]


def _registers_with_one_certified_version(wallet: Wallet, bank: RunningBank) -> None:
    """A registration after the failed ones certifies the only version there is."""
    pan, expiry = bank.new_card()
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    versions = _versions(wallet)
    assert len(versions) == 1 and versions[0][1], versions


def test_a_misspelt_field_leaves_no_key_version(bank: RunningBank, wallet: Wallet) -> None:
    """Refused after RegForm, before any key is needed: attempt after attempt."""
    pan, expiry = bank.new_card()
    for _ in range(ATTEMPTS):
        with pytest.raises(RegistrationError, match="has no field 'nmae'"):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC, form={"nmae": "x"})
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()
    _registers_with_one_certified_version(wallet, bank)


@pytest.mark.parametrize("call", ["card_c_init", "reg_form"])
def test_a_ca_unreachable_before_the_certreq_leaves_no_key_version(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    pan, expiry = bank.new_card()

    def down(*args: object, **kwargs: object) -> object:
        raise TransportError(f"CA {call}", "UNAVAILABLE")

    with monkeypatch.context() as patch:
        patch.setattr(wallet.authority, call, down)
        for _ in range(ATTEMPTS):
            with pytest.raises(TransportError):
                wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()
    _registers_with_one_certified_version(wallet, bank)


def test_a_request_that_cannot_be_built_takes_back_its_key(
    bank: RunningBank, wallet: Wallet
) -> None:
    """The key is made, then the CertReq is refused before it is sealed (an expiry no
    card has): the version goes, and nothing is sealed."""
    pan, _ = bank.new_card()
    with pytest.raises(ProtocolError, match="expiry"):
        wallet.registrar(WALLET_PASSPHRASE).register(pan, f"{MIN_EXPIRY_YEAR - 1}01", EC)
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()


def test_a_request_that_may_have_reached_the_ca_keeps_its_key(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CertReq reached the CA and its answer was lost: the key is kept for the
    resend, which is certified under that same version (no second one is made)."""
    pan, expiry = bank.new_card()
    real = wallet.authority.cert

    def answer_lost(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        real(request)
        raise TransportError("CA Cert", "DEADLINE_EXCEEDED")

    with monkeypatch.context() as patch:
        patch.setattr(wallet.authority, "cert", answer_lost)
        with pytest.raises(TransportError):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    [(version, certified)] = _versions(wallet)
    assert not certified
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None and pending["key_version"] == str(version)
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    assert _versions(wallet) == [(version, True)]


def test_a_registered_wallet_is_refused_before_the_ca_is_asked(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is made later than it was, but a wallet whose certified key can still sign
    is still refused first, without a word to the CA and without a new version."""
    registered = new_wallet(bank, tmp_path / "registered", None)
    try:
        registered.config.card_file.unlink()  # the card file lost: the key still signs
        before = _versions(registered)

        def not_asked(*args: object, **kwargs: object) -> object:
            raise AssertionError("the CA was asked")

        monkeypatch.setattr(registered.authority, "card_c_init", not_asked)
        pan, expiry = bank.new_card()
        with pytest.raises(RegistrationError, match="can still sign"):
            registered.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
        assert _versions(registered) == before
    finally:
        registered.close()
