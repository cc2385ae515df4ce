"""The merchant's registration with the Merchant CA, cut short and taken up again; renewal."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.authority import AuthorityClient
from clients.errors import RegistrationError, TransportError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OrderState
from clients.merchant.registration import (
    KEY_EXCHANGE_LABEL,
    PENDING_FILE,
    SIGNATURE_LABEL,
)
from clients.merchant.runtime import Merchant
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import TransientBackendError
from hsm.uri import open_backend
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_merchant_data
from setcore.profiles import EC
from setcore.registration import REJECTED_BY_AGENT
from tests.clients import bank_support
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer


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


def _key_versions(directory: Path) -> list[tuple[str, int, bool]]:
    """Every merchant key version in the backend, and whether it holds a certificate."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        return [
            (key.label, key.version, backend.certificate(key) is not None)
            for key in backend.list_keys()
        ]
    finally:
        backend.close()


def _renew(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli(["merchant", "--dir", str(directory), "renew"], capsys)


def test_a_renewed_merchant_sells_with_its_new_certificates_and_keeps_its_id(
    bank: RunningBank,
    tmp_path: Path,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = make_merchant("m-renew")
    old = (before.credentials.signature_thumb, before.credentials.key_exchange_thumb)
    before.close()
    directory = tmp_path / "m-renew"

    status, out, err = _renew(directory, capsys)
    assert (status, err) == (0, "")
    config = load_merchant_config(directory)
    after = Merchant.open(config)
    try:
        new = (after.credentials.signature_thumb, after.credentials.key_exchange_thumb)
        assert new[0] not in old and new[1] not in old and new[0] != new[1]
        assert out.startswith(f"renewed m-renew: signature certificate {new[0].hex()[:16]}")
        certified = read_merchant_data(load_certificate(after.credentials.signature_cert))
        assert certified is not None and certified.merchant_id == "m-renew"
        assert not (directory / PENDING_FILE).exists()
        after.serve()
        record = buy(make_wallet(after), offer(after, 1250))
        assert record.auth_code == "AUTH_CODE_APPROVED"
        assert after.store.order(bytes.fromhex(record.xid)).state is OrderState.AUTHORIZED
    finally:
        after.close()

    # The merchant ID stays with its holder: a stranger's initial registration is refused.
    stranger = tmp_path / "stranger"
    configure_merchant(bank, stranger, "m-renew")
    with pytest.raises(RegistrationError) as refused:
        register_merchant(stranger)
    assert refused.value.status == REJECTED_BY_AGENT


def test_renew_before_register_is_refused(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, pinned in (("m-unpinned", False), ("m-pinned", True)):
        directory = tmp_path / name
        configure_merchant(bank, directory, name, pin_root=pinned)
        status, out, err = _renew(directory, capsys)
        assert (status, out) == (1, "")
        assert "not registered yet: run register first" in err
    assert _key_versions(tmp_path / "m-pinned") == []


def test_a_renewal_the_ca_refuses_leaves_the_current_keys_in_use(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The renewal names another merchant ID than the certificate it renews: the CA
    refuses, the new keys are destroyed, the current ones stay certified and in use."""
    directory = tmp_path / "m-kept"
    configure_merchant(bank, directory, "m-kept")
    register_merchant(directory)
    held = _key_versions(directory)
    assert held == [(KEY_EXCHANGE_LABEL, 1, True), (SIGNATURE_LABEL, 1, True)]
    chain = (directory / "certs/chain.pem").read_bytes()

    configure_merchant(bank, directory, "m-other")
    status, _, err = _renew(directory, capsys)
    assert status == 1 and "the Merchant CA refused: CERT_STATUS_CODE_REJECTED_BY_AGENT" in err
    configure_merchant(bank, directory, "m-kept")
    assert _key_versions(directory) == held
    assert (directory / "certs/chain.pem").read_bytes() == chain
    assert not (directory / PENDING_FILE).exists()
    Merchant.open(load_merchant_config(directory)).close()


def test_a_renewal_whose_call_fails_leaves_the_current_keys_in_use(
    bank: RunningBank,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CertReq never reaches the CA: the current keys stay in use, the new ones are
    kept with the recorded request (a failed call does not prove the CA never decided
    it), and the next ``renew`` sends it and finishes."""
    directory = tmp_path / "m-cut"
    configure_merchant(bank, directory, "m-cut")
    register_merchant(directory)
    held = _key_versions(directory)
    signature = Merchant.open(load_merchant_config(directory))
    thumb = signature.credentials.signature_thumb
    signature.close()

    def unreachable(self: AuthorityClient, request: object) -> object:
        raise TransportError("CA", "UNAVAILABLE")

    monkeypatch.setattr(AuthorityClient, "cert", unreachable)
    status, _, err = _renew(directory, capsys)
    assert status == 1 and "UNAVAILABLE" in err
    monkeypatch.undo()
    assert sorted(_key_versions(directory)) == sorted(
        [*held, (KEY_EXCHANGE_LABEL, 2, False), (SIGNATURE_LABEL, 2, False)]
    )
    assert (directory / PENDING_FILE).exists()
    reopened = Merchant.open(load_merchant_config(directory))
    try:
        assert reopened.credentials.signature_thumb == thumb
    finally:
        reopened.close()

    status, _, err = _renew(directory, capsys)
    assert (status, err) == (0, "")
    assert sorted(_key_versions(directory)) == sorted(
        [*held, (KEY_EXCHANGE_LABEL, 2, True), (SIGNATURE_LABEL, 2, True)]
    )
    assert not (directory / PENDING_FILE).exists()


def test_a_form_field_the_ca_does_not_ask_for_is_refused(bank: RunningBank, tmp_path: Path) -> None:
    """A misspelt field would otherwise go to the CA empty, and the value be lost."""
    directory = tmp_path / "m-form"
    configure_merchant(bank, directory, "m-form")
    with merchant_registrar(directory) as registrar, pytest.raises(RegistrationError) as refused:
        registrar.register(EC, form={"legal-nmae": "Shop Ltd"})
    assert "has no field 'legal-nmae'" in str(refused.value)
    assert not (directory / PENDING_FILE).exists()
