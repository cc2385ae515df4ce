"""The wallet gives the card's enrolment code to the real Cardholder CA (asking the bank's
own LedgerDirectory, served on port 0): from the card file at registration, from its
sealed card at renewal."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from clients.authority import AuthorityClient
from clients.errors import RegistrationError
from clients.transport import Caller
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from gateway.ledger.enrolment import new_enrolment_code
from setcore.pan import PAN
from setcore.profiles import EC
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD
from setpay.v1 import registration_pb2
from tests.cards import card
from tests.clients.bank_support import (
    CREDIT_LIMIT,
    EUR,
    EXPIRY,
    WALLET_PASSPHRASE,
    RunningBank,
    new_wallet,
)
from tests.clients.wallet.ledger_ca_support import ledger_asking_ca

# Cards of these tests' own: BIN and serials.
TEST_BIN = "499997"


@contextmanager
def _registrar(bank: RunningBank, wallet: Wallet) -> Iterator[CardholderRegistrar]:
    """The wallet's registrar, talking to a CA over the bank's keys and ca.db that asks the
    bank's ledger itself (the bank's own CA asks a test desk that takes no code)."""
    with ledger_asking_ca(bank) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        authority = AuthorityClient(Caller(channel, "CA"))
        yield CardholderRegistrar(
            wallet.config, wallet.backend, authority, wallet.trust, WALLET_PASSPHRASE
        )


def _card_with_code(bank: RunningBank, serial: int) -> tuple[PAN, str]:
    pan, code = card(TEST_BIN, serial), new_enrolment_code()
    bank.ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR, enrolment_code=code)
    return PAN(pan), code


def test_the_code_registers_the_card_and_is_sealed_for_renewals(
    bank: RunningBank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pan, code = _card_with_code(bank, 1)
    wallet = new_wallet(bank, tmp_path / "wallet", None, register=False)
    try:
        with _registrar(bank, wallet) as registrar, caplog.at_level(logging.DEBUG):
            done = registrar.register(pan, EXPIRY, EC, enrolment_code=code)
            assert done.complete
            held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
            assert held.enrolment_code == code
            assert code.encode() not in wallet.config.card_file.read_bytes()
            # Renewal: the CA asks for the code again; the wallet gives the sealed one.
            renewed = registrar.renew(EC)
        assert renewed.complete
        assert renewed.certificate_thumb != done.certificate_thumb
        assert open_vault(wallet.config.card_file, WALLET_PASSPHRASE).enrolment_code == code
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert code not in logged and code.replace("-", "") not in logged
    finally:
        wallet.close()


def test_without_the_code_the_card_is_refused(bank: RunningBank, tmp_path: Path) -> None:
    pan, _ = _card_with_code(bank, 2)
    wallet = new_wallet(bank, tmp_path / "wallet", None, register=False)
    try:
        with _registrar(bank, wallet) as registrar, pytest.raises(RegistrationError) as refused:
            registrar.register(pan, EXPIRY, EC)
        assert refused.value.status == registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
        assert not wallet.config.card_file.exists()
    finally:
        wallet.close()


def test_a_code_the_bank_gave_later_is_given_at_renewal_as_a_form_field(
    bank: RunningBank, tmp_path: Path
) -> None:
    """A wallet registered before its card had a code renews with the bank's new one."""
    pan = card(TEST_BIN, 3)
    account = bank.ledger.open_card_account(pan, EXPIRY, CREDIT_LIMIT, EUR)
    wallet = new_wallet(bank, tmp_path / "wallet", None, register=False)
    try:
        with _registrar(bank, wallet) as registrar:
            assert registrar.register(PAN(pan), EXPIRY, EC).complete
            code = new_enrolment_code()
            bank.ledger.set_enrolment_code(account.account_id, code)
            with pytest.raises(RegistrationError):
                registrar.renew(EC)  # the sealed card holds no code
            renewed = registrar.renew(EC, form={ENROLMENT_CODE_FIELD: code})
            assert renewed.complete
            # Kept from then on: the next renewal needs nothing more.
            assert registrar.renew(EC).complete
    finally:
        wallet.close()
