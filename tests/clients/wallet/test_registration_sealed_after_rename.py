"""A request sealed by a write that failed after its rename keeps its key version.

The card file is written to a temporary file, renamed into place, then the directory is
fsynced (``clients.identity.write_atomically``). ``register`` and ``renew`` destroyed the
new key version on any failure of that seal: one in the directory's fsync (EIO), or a
Ctrl-C there, left the request sealed, naming a version that was gone, and every later
run failed the same way ("cannot be resumed: no key ..."). The card file is now read
back, and a version it names is kept; one that failed before the rename still goes. A
held request whose version is gone all the same is dropped, the command saying to run
again, instead of being refused at every run.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError, VaultError
from clients.wallet import registration as registration_module
from clients.wallet.runtime import Wallet
from clients.wallet.vault import CardSecrets, open_vault
from hsm.keystore import fsync_directory
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


@pytest.fixture
def registered(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A wallet whose card is registered (version 1 of its key certified)."""
    made = new_wallet(bank, tmp_path / "registered", None)
    yield made
    made.close()


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


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def _fsync_fails_once_replaced(
    patch: pytest.MonkeyPatch, path: Path, failure: BaseException
) -> None:
    """The directory's fsync raises ``failure`` once ``path`` has been renamed into place
    (a new file there); before, it flushes as it does."""
    before = _file_identity(path)

    def fsync(directory: Path) -> None:
        if _file_identity(path) != before:
            raise failure
        fsync_directory(directory)

    patch.setattr("clients.identity.fsync_directory", fsync)


def _rename_fails(patch: pytest.MonkeyPatch, path: Path) -> None:
    """Renaming a temporary file onto ``path`` fails (a full disk); any other rename runs."""
    real = os.replace

    def replace(source: object, target: object) -> None:
        if Path(str(target)) == path:
            raise OSError(errno.ENOSPC, "no space left on device")
        real(source, target)  # type: ignore[arg-type]

    patch.setattr(os, "replace", replace)


def _sends(patch: pytest.MonkeyPatch, wallet: Wallet) -> list[registration_pb2.CertRequest]:
    """Every CertReq the wallet sends from now on (each still reaches the CA)."""
    sent: list[registration_pb2.CertRequest] = []
    real = wallet.authority.cert

    def counted(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        sent.append(request)
        return real(request)

    patch.setattr(wallet.authority, "cert", counted)
    return sent


def _unreachable(patch: pytest.MonkeyPatch, wallet: Wallet) -> None:
    """The next CertReq never reaches the CA: sealed, then left for a later run."""

    def down(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        raise TransportError("CA Cert", "UNAVAILABLE")

    patch.setattr(wallet.authority, "cert", down)


FAILURES: list[Callable[[], BaseException]] = [
    lambda: OSError(errno.EIO, "directory fsync failed"),
    KeyboardInterrupt,
]


# -- the first line: a version the sealed request names is kept ------------------------------


@pytest.mark.parametrize("failure", FAILURES, ids=["eio", "ctrl-c"])
def test_a_registration_sealed_before_its_fsync_failed_keeps_its_key_and_resumes(
    bank: RunningBank,
    wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
    failure: Callable[[], BaseException],
) -> None:
    pan, expiry = bank.new_card()
    raised = failure()
    with monkeypatch.context() as patch:
        _fsync_fails_once_replaced(patch, wallet.config.card_file, raised)
        sent = _sends(patch, wallet)
        with pytest.raises(type(raised)):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert not sent  # the failure came before the CertReq could leave
    assert _versions(wallet) == [(1, False)]
    pending = _held(wallet).pending
    assert pending is not None and pending["key_version"] == "1"
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    assert _versions(wallet) == [(1, True)]  # the sealed request certified, no second version


@pytest.mark.parametrize("failure", FAILURES, ids=["eio", "ctrl-c"])
def test_a_renewal_sealed_before_its_fsync_failed_keeps_its_key_and_resumes(
    registered: Wallet, monkeypatch: pytest.MonkeyPatch, failure: Callable[[], BaseException]
) -> None:
    raised = failure()
    with monkeypatch.context() as patch:
        _fsync_fails_once_replaced(patch, registered.config.card_file, raised)
        with pytest.raises(type(raised)):
            registered.registrar(WALLET_PASSPHRASE).renew(EC)
    assert _versions(registered) == [(1, True), (2, False)]
    held = _held(registered)
    assert held.pending is not None and held.pending["key_version"] == "2"
    assert held.pan_secret is not None  # the card still buys with version 1
    assert registered.registrar(WALLET_PASSPHRASE).renew(EC).complete
    assert _versions(registered) == [(1, True), (2, True)]


def test_a_seal_that_failed_before_its_rename_still_takes_the_key_back(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    with monkeypatch.context() as patch:
        _rename_fails(patch, wallet.config.card_file)
        with pytest.raises(OSError, match="no space"):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()
    assert not list(wallet.config.card_file.parent.glob(f".{wallet.config.card_file.name}.*"))
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    assert _versions(wallet) == [(1, True)]


def test_a_renewal_whose_seal_failed_before_its_rename_takes_its_key_back(
    registered: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _rename_fails(patch, registered.config.card_file)
        with pytest.raises(OSError, match="no space"):
            registered.registrar(WALLET_PASSPHRASE).renew(EC)
    assert _versions(registered) == [(1, True)]
    held = _held(registered)
    assert held.pending is None and held.pan_secret is not None


def test_a_card_file_that_cannot_be_read_back_keeps_the_version_in_doubt(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Destroyed under a sealed request, the version would strand it; kept, it costs a
    slot at most."""
    pan, expiry = bank.new_card()

    def unreadable(path: Path, passphrase: str) -> CardSecrets:
        raise VaultError(f"cannot read {path.name}: input/output error")

    with monkeypatch.context() as patch:
        failure = OSError(errno.EIO, "directory fsync failed")
        _fsync_fails_once_replaced(patch, wallet.config.card_file, failure)
        patch.setattr(registration_module, "open_vault", unreadable)
        with pytest.raises(OSError, match="fsync"):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert _versions(wallet) == [(1, False)]
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete


# -- the second line: a held request whose version is gone is dropped -------------------------


def test_a_held_registration_whose_key_is_gone_is_dropped_with_the_advice(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    with monkeypatch.context() as patch:
        _unreachable(patch, wallet)
        with pytest.raises(TransportError):
            wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    wallet.backend.delete(wallet.config.key_label, 1)
    with pytest.raises(RegistrationError) as dropped:
        wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    message = str(dropped.value)
    assert "dropped" in message and "v1" in message, message
    assert "`setpay wallet register --card CARD.json` again" in message, message
    assert pan.reveal() not in message
    held = _held(wallet)
    assert held.pending is None and held.pan_secret is None
    # The next run registers, rather than failing the same way.
    assert wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC).complete
    assert _versions(wallet) == [(1, True)]


def test_a_held_renewal_whose_key_is_gone_is_dropped_and_the_card_stays_registered(
    registered: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _unreachable(patch, registered)
        with pytest.raises(TransportError):
            registered.registrar(WALLET_PASSPHRASE).renew(EC)
    registered.backend.delete(registered.config.key_label, 2)
    with pytest.raises(RegistrationError, match=r"dropped.*`setpay wallet renew` again"):
        registered.registrar(WALLET_PASSPHRASE).renew(EC)
    held = _held(registered)
    assert held.pending is None and held.pan_secret is not None
    assert _versions(registered) == [(1, True)]
    assert registered.registrar(WALLET_PASSPHRASE).renew(EC).complete
    assert _versions(registered) == [(1, True), (2, True)]


def test_a_held_request_whose_key_is_there_is_not_dropped(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another failure to resume is not taken for a missing key: the request stays."""
    pan, expiry = bank.new_card()
    with monkeypatch.context() as patch:
        _unreachable(patch, wallet)
        for _ in range(2):
            with pytest.raises(TransportError):
                wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    pending = _held(wallet).pending
    assert pending is not None and pending["key_version"] == "1"
    assert _versions(wallet) == [(1, False)]
