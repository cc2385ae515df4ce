"""A merchant's CertRes lost after the Merchant CA decided: the next run collects it.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys. The CA gets
the CertReq and decides it; its answer is then lost (the TransportError the Caller
raises on a deadline, after the real call returned). The request was recorded before it
left, so the next ``register`` (or ``renew``) sends the same bytes again, and the CA
answers them from its store with the certificates it issued the first time.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from clients.authority import AuthorityClient
from clients.errors import TransportError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import (
    KEY_EXCHANGE_LABEL,
    PENDING_FILE,
    SIGNATURE_LABEL,
)
from clients.merchant.runtime import Merchant
from hsm.uri import open_backend
from setcore.profiles import EC
from setcore.signed import parse_signed
from setpay.v1 import registration_pb2
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.conftest import WalletFactory
from tests.clients.test_purchase_flow import buy, offer

# What a fault set up by ``_left_unfinished`` gives back (the certificates of a lost answer).
Made = TypeVar("Made")


def _answer_lost(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Make the next CertReq reach the CA and its answer vanish; the certificates the CA
    put in that answer's bundle are collected in the list returned."""
    issued: list[bytes] = []
    real = AuthorityClient.cert

    def lost(self: AuthorityClient, request: registration_pb2.CertRequest) -> object:
        response = real(self, request)  # the CA decides and certifies ...
        issued.extend(parse_signed(response.cert_res).bundle.certificates)
        raise TransportError("CA Cert", "DEADLINE_EXCEEDED")  # ... the answer never arrives

    monkeypatch.setattr(AuthorityClient, "cert", lost)
    return issued


def _left_unfinished(
    bank: RunningBank,
    directory: Path,
    merchant_id: str,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[pytest.MonkeyPatch], Made],
) -> Made:
    """Configure ``directory`` as ``merchant_id`` and register it with ``fault`` in place
    (undone after): the registration fails with a TransportError, its request recorded.
    Returns what ``fault`` did."""
    configure_merchant(bank, directory, merchant_id)
    made = fault(monkeypatch)
    with pytest.raises(TransportError):
        register_merchant(directory)
    monkeypatch.undo()
    return made


def _stored(directory: Path) -> dict[tuple[str, int], bytes | None]:
    """Every merchant key version and the certificate stored beside it."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        return {(key.label, key.version): backend.certificate(key) for key in backend.list_keys()}
    finally:
        backend.close()


def _renew(directory: Path) -> None:
    """The merchant's renewal, as ``setpay merchant renew`` runs it."""
    with merchant_registrar(directory) as registrar:
        assert registrar.renew(EC).complete


def test_a_lost_certres_is_collected_by_the_next_register(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_wallet: WalletFactory,
) -> None:
    directory = tmp_path / "m-lost"
    issued = _left_unfinished(bank, directory, "m-lost", monkeypatch, _answer_lost)
    assert len(issued) > 2, "the CA issued nothing: the answer under test was not lost"
    pending = directory / PENDING_FILE
    mode = stat.S_IMODE(pending.stat().st_mode) if pending.exists() else None

    register_merchant(directory)  # refused REJECTED_BY_AGENT when nothing was recorded
    assert mode == 0o600
    stored = _stored(directory)
    assert stored[(SIGNATURE_LABEL, 1)] in issued and stored[(KEY_EXCHANGE_LABEL, 1)] in issued
    assert not pending.exists()
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        merchant.serve()
        record = buy(make_wallet(merchant), offer(merchant, 1250))
        assert record.auth_code == "AUTH_CODE_APPROVED"
    finally:
        merchant.close()


def test_a_lost_renewal_answer_keeps_the_new_keys_for_the_next_renew(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m-lost-renewal"
    configure_merchant(bank, directory, "m-lost-renewal")
    register_merchant(directory)
    before = Merchant.open(load_merchant_config(directory))
    old = before.credentials.signature_thumb
    before.close()

    issued = _answer_lost(monkeypatch)
    with pytest.raises(TransportError):
        _renew(directory)
    monkeypatch.undo()
    assert len(issued) > 2, "the CA issued nothing: the answer under test was not lost"
    stored = _stored(directory)
    # The new keys are kept (uncertified): the CA certified them, and the next run collects.
    assert stored[(SIGNATURE_LABEL, 2)] is None and stored[(KEY_EXCHANGE_LABEL, 2)] is None
    assert (directory / PENDING_FILE).exists()
    meanwhile = Merchant.open(load_merchant_config(directory))
    try:
        assert meanwhile.credentials.signature_thumb == old  # the current keys still sign
    finally:
        meanwhile.close()

    _renew(directory)
    stored = _stored(directory)
    assert stored[(SIGNATURE_LABEL, 2)] in issued and stored[(KEY_EXCHANGE_LABEL, 2)] in issued
    assert not (directory / PENDING_FILE).exists()
    after = Merchant.open(load_merchant_config(directory))
    try:
        assert after.credentials.signature_thumb != old
    finally:
        after.close()
