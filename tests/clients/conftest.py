"""Fixtures for the client tests: one real bank per session, merchants and wallets on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.runtime import Merchant
from clients.wallet.runtime import Wallet
from tests.clients.bank_support import RunningBank, new_merchant, new_wallet, serving_bank

KEYSTORE_PASSPHRASE = "keystore passphrase for tests"


@pytest.fixture(scope="session")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBank]:
    """The bank, initialised and serving for the whole session."""
    with serving_bank(tmp_path_factory.mktemp("bank") / "bank", KEYSTORE_PASSPHRASE) as running:
        yield running


class MerchantFactory(Protocol):
    """Makes a registered, serving merchant."""

    def __call__(
        self,
        merchant_id: str,
        answer: AnswerMode = ...,
        gateway_target: str | None = ...,
    ) -> Merchant: ...


WalletFactory = Callable[[Merchant | None], Wallet]


@pytest.fixture
def make_merchant(bank: RunningBank, tmp_path: Path) -> Iterator[MerchantFactory]:
    """Registers and serves merchants in this test's directory; stops them afterwards."""
    made: list[Merchant] = []

    def make(
        merchant_id: str,
        answer: AnswerMode = AnswerMode.AFTER_AUTHORIZATION,
        gateway_target: str | None = None,
    ) -> Merchant:
        merchant = new_merchant(bank, tmp_path / merchant_id, merchant_id, answer, gateway_target)
        made.append(merchant)
        return merchant

    yield make
    for merchant in made:
        merchant.close()


@pytest.fixture
def make_wallet(bank: RunningBank, tmp_path: Path) -> Iterator[WalletFactory]:
    """Registers wallets (each with a card account of its own) in this test's directory."""
    made: list[Wallet] = []

    def make(merchant: Merchant | None) -> Wallet:
        target = f"127.0.0.1:{merchant.port}" if merchant is not None else None
        wallet = new_wallet(bank, tmp_path / f"wallet-{len(made)}", target)
        made.append(wallet)
        return wallet

    yield make
    for wallet in made:
        wallet.close()
