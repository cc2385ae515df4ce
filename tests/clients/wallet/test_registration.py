"""Cardholder registration with the real Cardholder CA, including a pended request."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from clients.errors import RegistrationError
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.vault import open_vault
from setcore.pan import PAN
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.cards import VISA_ZEROS
from tests.clients.bank_support import EXPIRY, WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.conftest import MerchantFactory
from tests.clients.test_purchase_flow import buy, offer


def _no_sleep(seconds: float) -> None:
    """Polls of a pended request run back to back in tests."""


def test_pended_request_is_resumed_with_cert_inq(
    bank: RunningBank, make_merchant: MerchantFactory, tmp_path: Path
) -> None:
    merchant = make_merchant("m-pended")
    wallet = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{merchant.port}", register=False)
    try:
        pan, expiry = bank.new_card()
        bank.issuer.review(pan)
        registrar = CardholderRegistrar(
            wallet.config, wallet.backend, wallet.authority, wallet.trust, WALLET_PASSPHRASE,
            sleep=_no_sleep,
        )  # fmt: skip
        first = registrar.register(pan, expiry, EC)
        assert first.status == registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED
        assert not first.complete
        pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
        assert pending is not None and "back_key" in pending
        # Pended state is sealed: neither the back key nor CardSecret is readable on disk.
        assert pending["back_key"].encode() not in wallet.config.card_file.read_bytes()

        # Still pended: asking again changes nothing.
        assert registrar.register(pan, expiry, EC).status == first.status
        status = bank.authority.decide_pending(
            base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"]),
            approve=True,
        )  # fmt: skip
        assert status == registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
        done = registrar.register(pan, expiry, EC)
        assert done.complete
        secrets = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
        assert secrets.pending is None and secrets.pan_secret is not None
        record = buy(wallet, offer(merchant, 990))
        assert record.auth_code == "AUTH_CODE_APPROVED"
    finally:
        wallet.close()


def test_unknown_card_is_refused(bank: RunningBank, tmp_path: Path) -> None:
    """As a wrong expiry is: the CA does not say which (no card-number oracle)."""
    wallet = new_wallet(bank, tmp_path / "wallet", None, register=False)
    try:
        with pytest.raises(RegistrationError) as caught:
            wallet.registrar(WALLET_PASSPHRASE).register(PAN(VISA_ZEROS), EXPIRY, EC)
        assert caught.value.status == registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
        assert not wallet.config.card_file.exists()
    finally:
        wallet.close()


def test_registered_wallet_does_not_register_twice(bank: RunningBank, tmp_path: Path) -> None:
    """And says what to do instead: renew the certificate."""
    wallet = new_wallet(bank, tmp_path / "wallet", None)
    try:
        pan, expiry = bank.new_card()
        with pytest.raises(RegistrationError, match="already") as refused:
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
        assert "setpay wallet renew" in str(refused.value)
    finally:
        wallet.close()


def test_a_form_field_the_ca_does_not_ask_for_is_refused(bank: RunningBank, tmp_path: Path) -> None:
    """A misspelt field name is named in the refusal, not dropped from the request."""
    wallet = new_wallet(bank, tmp_path / "wallet", None, register=False)
    try:
        pan, expiry = bank.new_card()
        form = {"cardholder-name": "A. Holder", "postcode": "1000"}
        with pytest.raises(RegistrationError, match="no field 'postcode'") as refused:
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC, form=form)
        assert "billing-postcode" in str(refused.value)
        assert not wallet.config.card_file.exists()
    finally:
        wallet.close()
