"""The merchant's registration with the Merchant CA, cut short and taken up again."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from clients.merchant.runtime import Merchant
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import TransientBackendError
from hsm.uri import open_backend
from tests.clients import bank_support
from tests.clients.bank_support import RunningBank, configure_merchant, register_merchant


def _certificates(directory: Path) -> tuple[bytes | None, bytes | None]:
    """The certificates stored beside the merchant's two keys (None where there is none)."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        return tuple(  # type: ignore[return-value]
            backend.certificate(backend.get(label))
            for label in (SIGNATURE_LABEL, KEY_EXCHANGE_LABEL)
        )
    finally:
        backend.close()


def test_a_registration_cut_between_its_two_certificates_is_finished_by_the_next(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key backend fails after storing the first certificate: the next ``register``
    fetches the issued certificates again and stores what is missing."""
    directory = tmp_path / "m-half"
    configure_merchant(bank, directory, "m-half")
    stored: list[str] = []

    def flaky(uri: str) -> KeyBackend:
        backend = open_backend(uri)
        real = backend.store_certificate

        def store_certificate(key: KeyHandle, der: bytes) -> None:
            if stored:
                raise TransientBackendError("the token went away")
            stored.append(key.label)
            real(key, der)

        monkeypatch.setattr(backend, "store_certificate", store_certificate)
        return backend

    monkeypatch.setattr(bank_support, "open_backend", flaky)
    with pytest.raises(TransientBackendError):
        register_merchant(directory)
    monkeypatch.undo()
    signature, key_exchange = _certificates(directory)
    assert stored == [SIGNATURE_LABEL] and signature is not None and key_exchange is None

    register_merchant(directory)
    signature_now, key_exchange_now = _certificates(directory)
    assert signature_now == signature and key_exchange_now is not None
    assert not (directory / PENDING_FILE).exists()
    Merchant.open(load_merchant_config(directory)).close()
