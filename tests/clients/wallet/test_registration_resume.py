"""A certificate request lost on the way, or whose answer was lost, does not strand the wallet."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from clients.errors import TransportError
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault, seal
from setcore.freshness import FRESHNESS_WINDOW_MS
from setcore.pan import PAN
from setcore.profiles import EC, RSA, Profile
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet

CertCall = Callable[[registration_pb2.CertRequest], registration_pb2.CertResponse]


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _unreachable(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
    raise TransportError("CA Cert", "UNAVAILABLE")


def _answer_lost(real: CertCall) -> CertCall:
    def cert(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        real(request)
        raise TransportError("CA Cert", "DEADLINE_EXCEEDED")

    return cert


def _register_once_failing(
    wallet: Wallet,
    pan: PAN,
    expiry: str,
    fail: CertCall,
    monkeypatch: pytest.MonkeyPatch,
    profile: Profile = EC,
) -> None:
    """Register with the CertReq going through ``fail``; the pending state holds the request."""
    real = wallet.authority.cert
    monkeypatch.setattr(wallet.authority, "cert", fail)
    with pytest.raises(TransportError):
        wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, profile)
    monkeypatch.setattr(wallet.authority, "cert", real)
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None and "cert_request" in pending


def _registered(wallet: Wallet) -> bool:
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    return held.pending is None and held.pan_secret is not None


@pytest.mark.parametrize("profile", [EC, RSA], ids=lambda p: p.name)
def test_a_request_that_never_reached_the_ca_is_sent_again(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch, profile: Profile
) -> None:
    pan, expiry = bank.new_card()
    _register_once_failing(wallet, pan, expiry, _unreachable, monkeypatch, profile)
    done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, profile)
    assert done.complete and _registered(wallet)


def test_a_lost_answer_is_given_again_by_the_ca(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    _register_once_failing(wallet, pan, expiry, _answer_lost(wallet.authority.cert), monkeypatch)
    done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert done.complete and _registered(wallet)
    # The stored answer: the certificate the CA issued the first time, for the key then made.
    key = wallet.backend.get(wallet.config.key_label)
    assert wallet.backend.certificate(key) is not None


def test_a_pending_state_the_ca_never_heard_of_starts_over(
    bank: RunningBank,
    wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state sealed without the request's bytes (as wallets did before): CertInq gets
    UNKNOWN_LID, so the registration is run again from the start."""
    pan, expiry = bank.new_card()
    _register_once_failing(wallet, pan, expiry, _unreachable, monkeypatch)
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is not None
    keep = {
        k: v for k, v in held.pending.items() if k not in ("cert_request", "rrpid", "chall_ee3")
    }
    seal(wallet.config.card_file, type(held)(pan, expiry, held.card_secret, None, keep),
         WALLET_PASSPHRASE)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="setpay.wallet"):
        done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert done.complete and _registered(wallet)
    assert "registering again" in caplog.text and pan.reveal() not in caplog.text


def test_a_request_too_old_to_process_starts_over(
    bank: RunningBank,
    wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The CA never saw the request and it is now outside the freshness window."""
    pan, expiry = bank.new_card()
    _register_once_failing(wallet, pan, expiry, _unreachable, monkeypatch)
    real = wallet.authority.cert
    later = timedelta(milliseconds=2 * FRESHNESS_WINDOW_MS)
    calls = 0

    def cert_later(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        """The first resend reaches a CA whose clock is past the request's window."""
        nonlocal calls
        calls += 1
        if calls > 1:
            return real(request)
        # The Cardholder CA judges a request's date by its own clock: move that one.
        registrar = bank.authority._cardholder
        clock = registrar._clock
        with monkeypatch.context() as patch:
            patch.setattr(registrar, "_clock", lambda: clock() + int(later.total_seconds() * 1000))
            return real(request)

    monkeypatch.setattr(wallet.authority, "cert", cert_later)
    with caplog.at_level(logging.WARNING, logger="setpay.wallet"):
        done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert calls == 2
    assert done.complete and _registered(wallet)
    assert "registering again" in caplog.text
