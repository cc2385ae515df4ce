"""One ``register`` or ``renew`` at a time in a wallet directory (``clients.registration_lock``).

Real bank, real CA over gRPC and TLS, real soft keys. A second registration started
while one runs (two terminals, a cron job beside the cardholder) used to read the card
file before the first sealed its request there and seal its own over it: the request
overwritten was never collected nor asked about again, its key version kept uncertified.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.registration_lock import LOCK_FILE
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.thread_support import in_thread

# How long a test's thread waits for the other one to reach the same point: the lock
# refuses the second at once, so under it the first waits this out alone.
MEET_SECONDS = 3.0


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _held_first_form(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The first registration's CardCInit waits (its lock held) until released: (inside,
    release)."""
    inside, release = threading.Event(), threading.Event()
    real = CardholderRegistrar._form

    def held(self: CardholderRegistrar, pan: object, request_type: int) -> object:
        if not inside.is_set():
            inside.set()
            assert release.wait(30)
        return real(self, pan, request_type)  # type: ignore[arg-type]

    monkeypatch.setattr(CardholderRegistrar, "_form", held)
    return inside, release


def test_a_second_register_while_one_runs_is_refused_and_changes_nothing(
    wallet: Wallet, bank: RunningBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    inside, release = _held_first_form(monkeypatch)
    first, raised = in_thread(lambda: wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC))
    try:
        assert inside.wait(30)
        with pytest.raises(RegistrationError, match="register` or `renew` is running") as refused:
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
        assert LOCK_FILE in str(refused.value)
        # The second made no key version and sealed nothing.
        assert list(wallet.backend.list_keys()) == []
        assert not wallet.config.card_file.exists()
    finally:
        release.set()
        first.join(60)
    assert not raised, raised
    assert wallet.summary(WALLET_PASSPHRASE).registered


def test_a_renew_while_a_renew_runs_is_refused(
    wallet: Wallet, bank: RunningBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    sealed = wallet.config.card_file.read_bytes()
    versions = {(key.label, key.version) for key in wallet.backend.list_keys()}
    inside, release = _held_first_form(monkeypatch)
    first, raised = in_thread(lambda: wallet.registrar(WALLET_PASSPHRASE).renew(EC))
    try:
        assert inside.wait(30)
        with pytest.raises(RegistrationError, match="this renew made, recorded and sent nothing"):
            wallet.registrar(WALLET_PASSPHRASE).renew(EC)
        assert {(key.label, key.version) for key in wallet.backend.list_keys()} == versions
        assert wallet.config.card_file.read_bytes() == sealed
    finally:
        release.set()
        first.join(60)
    assert not raised, raised


def test_two_renewals_at_once_never_strand_a_certified_request(
    wallet: Wallet, bank: RunningBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both renewals started together (each past its reading of the card file before
    either sealed its request there, where they could meet); the first CertReq to reach
    the CA is the one whose request the card file does not hold, if there is one, and its
    answer is lost. The next ``renew`` then collects what the CA certified: no key version
    is left without its certificate."""
    pan, expiry = bank.new_card()
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    meet = threading.Barrier(2, timeout=MEET_SECONDS)
    real_form = CardholderRegistrar._form

    def together(self: CardholderRegistrar, pan: object, request_type: int) -> object:
        # Alone when the barrier breaks: the other was refused, or never came.
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return real_form(self, pan, request_type)  # type: ignore[arg-type]

    monkeypatch.setattr(CardholderRegistrar, "_form", together)
    real_cert = wallet.authority.cert
    turn = threading.Condition()
    arrived: list[bytes] = []
    order: list[bytes] = []
    done: list[bytes] = []

    def cert(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        wire = request.SerializeToString()
        with turn:
            arrived.append(wire)
            turn.notify_all()
            turn.wait_for(lambda: len(arrived) == 2, timeout=MEET_SECONDS)
            if not order:
                held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending or {}
                recorded = base64.b64decode(held.get("cert_request", ""))
                first = next((w for w in arrived if w != recorded), arrived[0])
                order.extend([first, *(w for w in arrived if w != first)])
            turn.wait_for(lambda: order[len(done)] == wire)
        try:
            response = real_cert(request)  # the CA decides ...
            if wire == order[0]:
                raise TransportError("CA Cert", "DEADLINE_EXCEEDED")  # ... the answer is lost
            return response
        finally:
            with turn:
                done.append(wire)
                turn.notify_all()

    monkeypatch.setattr(wallet.authority, "cert", cert)
    runs = [in_thread(lambda: wallet.registrar(WALLET_PASSPHRASE).renew(EC)) for _ in range(2)]
    for thread, _ in runs:
        thread.join(60)
    monkeypatch.undo()
    for _, raised in runs:
        assert all(isinstance(exc, TransportError | RegistrationError) for exc in raised), raised
    assert done, "no CertReq reached the CA"

    assert wallet.registrar(WALLET_PASSPHRASE).renew(EC).complete
    uncertified = [
        key.version
        for key in wallet.backend.list_keys()
        if key.label == wallet.config.key_label and wallet.backend.certificate(key) is None
    ]
    assert uncertified == [], f"key versions left without their certificate: {uncertified}"
