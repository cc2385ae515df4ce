"""A held request taken back destroys its key version without reading the card file back,
and no way of destroying a version reaches a certified one.

``_take_back`` seals the card without the request, then destroyed the version through
the read-back meant for a seal that failed after its rename: the card file opened again
(scrypt, some 70 ms), to find no pending version in what had just been sealed; and a
request dropped as its version was gone paid it for no version at all. The read-back is
kept for the seal that failed alone (``test_registration_sealed_after_rename``).

A certified version is never destroyed, whichever way: the check is the last line before
the backend's delete, so the tests call the two helpers that reach it directly.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.wallet import registration as registration_module
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import CardSecrets, open_vault
from hsm.base import KeyUsage
from setcore.profiles import EC
from setcore.registration import REQUEST_PENDED
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet

REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER


@pytest.fixture
def registered(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A wallet whose card is registered (version 1 of its key certified)."""
    made = new_wallet(bank, tmp_path / "registered", None)
    yield made
    made.close()


def _no_sleep(seconds: float) -> None:
    """Polls of a pended request run back to back in tests."""


def _registrar(wallet: Wallet) -> CardholderRegistrar:
    return CardholderRegistrar(
        wallet.config, wallet.backend, wallet.authority, wallet.trust, WALLET_PASSPHRASE,
        sleep=_no_sleep,
    )  # fmt: skip


def _versions(wallet: Wallet) -> list[tuple[int, bool]]:
    """Each version of the wallet's signature key, and whether a certificate names it."""
    label = wallet.config.key_label
    return sorted(
        (key.version, wallet.backend.certificate(key) is not None)
        for key in wallet.backend.list_keys()
        if key.label == label
    )


def _held(wallet: Wallet) -> CardSecrets:
    return open_vault(wallet.config.card_file, WALLET_PASSPHRASE)


def _opens(patch: pytest.MonkeyPatch) -> list[Path]:
    """Each card file the registration opens from now on (each still opened)."""
    opened: list[Path] = []

    def counted(path: Path, passphrase: str) -> CardSecrets:
        opened.append(path)
        return open_vault(path, passphrase)

    patch.setattr(registration_module, "open_vault", counted)
    return opened


def _unsent(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
    raise TransportError("CA Cert", "UNAVAILABLE")


# -- a take-back reads nothing back ------------------------------------------------------


def test_a_renewal_dropped_as_its_key_is_gone_opens_the_card_file_once(
    registered: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``renew`` reads the card file to find the held renewal; dropping it (no version to
    destroy) seals the card again, and opens nothing more."""
    with monkeypatch.context() as patch:
        patch.setattr(registered.authority, "cert", _unsent)
        with pytest.raises(TransportError):
            _registrar(registered).renew(EC)
    registered.backend.delete(registered.config.key_label, 2)
    with monkeypatch.context() as patch:
        opened = _opens(patch)
        with pytest.raises(RegistrationError, match="dropped"):
            _registrar(registered).renew(EC)
    assert opened == [registered.config.card_file]
    held = _held(registered)
    assert held.pending is None and held.pan_secret is not None
    assert _versions(registered) == [(1, True)]


def test_a_refused_pended_renewal_takes_its_version_back_without_reading_back(
    bank: RunningBank, registered: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA's verified refusal to a pended renewal: the version goes, the card stays
    registered, and the card file is opened only by ``renew`` itself."""
    held = _held(registered)
    bank.issuer.review(held.pan)
    assert _registrar(registered).renew(EC).status == REQUEST_PENDED
    pending = _held(registered).pending
    assert pending is not None and pending["key_version"] == "2"
    lids = base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"])
    assert bank.authority.decide_pending(*lids, approve=False) == REJECTED_BY_ISSUER
    with monkeypatch.context() as patch:
        opened = _opens(patch)
        with pytest.raises(RegistrationError) as refused:
            _registrar(registered).renew(EC)
    assert refused.value.status == REJECTED_BY_ISSUER
    assert opened == [registered.config.card_file]
    assert _versions(registered) == [(1, True)]
    after = _held(registered)
    assert after.pending is None and after.pan_secret == held.pan_secret


# -- a certified version is never destroyed ----------------------------------------------


def test_a_certified_version_is_never_destroyed(registered: Wallet) -> None:
    """Neither helper that destroys a version destroys the certified one; each destroys
    an uncertified one, and no version (None) is nothing to destroy."""
    registrar = _registrar(registered)
    registrar._destroy_version(1)
    registrar._discard_unsealed(1)  # the card file names no pending version 1
    assert _versions(registered) == [(1, True)]
    registrar._destroy_version(None)
    assert _versions(registered) == [(1, True)]
    label = registered.config.key_label
    for destroy in (registrar._destroy_version, registrar._discard_unsealed):
        made = registered.backend.generate(label, KeyUsage.SIGNATURE, EC.signature_key)
        destroy(made.version)
        assert _versions(registered) == [(1, True)]
