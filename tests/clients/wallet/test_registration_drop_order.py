"""A registration the Cardholder CA holds nothing of loses its card file first, then its
key version.

``register`` resuming a pending registration that CertInq answers UNKNOWN_LID removes the
sealed card file before it destroys the key version the request named: a crash between
the two then leaves a version nothing names (a slot, at worst), never a card file naming
a destroyed version, which no run could resume. The reverse order would not even destroy
it (a version the card file names is kept, in doubt), so the end state tells, but only
after the new registration has run; this test watches the order itself: the wallet's key
backend notes, at each destruction, whether the card file is still on disk.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.wallet.runtime import Wallet
from setcore.profiles import EC
from tests.clients.bank_support import RunningBank, new_wallet
from tests.clients.wallet.test_registration_dropped_versions import (
    _registrar,
    _unheard_of,
    _versions,
)


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


class _Destroying(Exception):
    """A key destruction that fails (the process gone in the middle of it)."""


def _watched(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch, *, failing: bool = False
) -> list[tuple[str, int | None, bool]]:
    """Each key destruction from now on: label, version, and whether the card file was
    still there; ``failing``: the destruction raises instead (after being noted)."""
    destroyed: list[tuple[str, int | None, bool]] = []
    backend, card_file = wallet.backend, wallet.config.card_file
    real = backend.delete

    def delete(label: str, version: int | None = None) -> None:
        destroyed.append((label, version, card_file.exists()))
        if failing:
            raise _Destroying(f"{label} v{version}")
        real(label, version)

    monkeypatch.setattr(backend, "delete", delete)
    return destroyed


def test_a_request_the_ca_holds_nothing_of_loses_its_card_file_before_its_version(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    version = _unheard_of(wallet, pan, expiry, monkeypatch)
    destroyed = _watched(wallet, monkeypatch)
    assert _registrar(wallet).register(pan, expiry, EC).complete
    assert destroyed == [(wallet.config.key_label, version, False)]
    assert [certified for _, certified in _versions(wallet)] == [True]


def test_a_destruction_that_fails_leaves_no_card_file_naming_the_version(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destruction fails: the card file is gone already, the version merely kept."""
    pan, expiry = bank.new_card()
    version = _unheard_of(wallet, pan, expiry, monkeypatch)
    destroyed = _watched(wallet, monkeypatch, failing=True)
    with pytest.raises(_Destroying):
        _registrar(wallet).register(pan, expiry, EC)
    assert destroyed == [(wallet.config.key_label, version, False)]
    assert not wallet.config.card_file.exists()
    assert _versions(wallet) == [(version, False)]
