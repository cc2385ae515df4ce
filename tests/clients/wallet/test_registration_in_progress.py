"""A Cardholder CA that answers REQUEST_IN_PROGRESS: it has not decided the request yet.

SET defines two CertStatus codes for a request the CA is still deciding, requestPended
and requestInProgress (SET-PROTOCOL.md 4.1). setpay's CA sends only the first; another
CA, or a later release, may send either, and may still certify the request after either.
The wallet kept only REQUEST_PENDED and took REQUEST_IN_PROGRESS for a refusal: the card
file went, and with it the key version the CA might still certify. Now both are polled
with CertInq, then kept in the sealed card file with their key version for a later run,
which ``setpay wallet register`` and ``renew`` report as not decided yet (exit 3).

Real bank, real CA over gRPC and TLS; the issuer pends the card, and the CA's answers,
built, signed and sealed by its own code, say REQUEST_IN_PROGRESS where it would say
REQUEST_PENDED: a CA that tells its wallets a person is still looking at the card so.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from gateway.ca import cardholder as ca_cardholder
from setcore.credentials import Credentials
from setcore.pan import PAN
from setcore.profiles import EC
from setcore.registration import RevocationData
from setcore.registration_certreq import CertAnswer
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.wallet.conftest import Setpay
from tests.clients.wallet.test_registration_dropped_versions import (
    _pending,
    _registrar,
    _versions,
)

IN_PROGRESS = registration_pb2.CERT_STATUS_CODE_REQUEST_IN_PROGRESS
PENDED = registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED
REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# The CertInqs ``register`` sends about an undecided request before it leaves it.
POLLS = 3
# What ``setpay wallet register`` exits with for a request the CA has not decided.
EXIT_PENDED = 3


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _saying_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Cardholder CA answers REQUEST_IN_PROGRESS wherever it would say REQUEST_PENDED
    (to the CertReq, and to each CertInq while the request waits)."""
    real = ca_cardholder.build_card_cert_response

    def saying(ca: Credentials, back_key: bytes, answer: CertAnswer, status: int, *,
               revocation: RevocationData | None, certificate: bytes | None = None,
               nonce_cca: bytes = b"", ee_message: str = "") -> bytes:  # fmt: skip
        return real(
            ca, back_key, answer, IN_PROGRESS if status == PENDED else status,
            revocation=revocation, certificate=certificate, nonce_cca=nonce_cca,
            ee_message=ee_message,
        )  # fmt: skip

    monkeypatch.setattr(ca_cardholder, "build_card_cert_response", saying)


def _asked(wallet: Wallet, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per CertInq the wallet sends from now on (each still reaches the CA)."""
    sent: list[int] = []
    real = wallet.authority.cert_inq

    def counted(request: registration_pb2.CertInqRequest) -> registration_pb2.CertInqResponse:
        sent.append(1)
        return real(request)

    monkeypatch.setattr(wallet.authority, "cert_inq", counted)
    return sent


def _decide(bank: RunningBank, wallet: Wallet, *, approve: bool) -> None:
    """The issuer's reviewer decides the held request."""
    pending = _pending(wallet)
    lids = base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"])
    bank.authority.decide_pending(*lids, approve=approve)


def _in_progress(
    bank: RunningBank, wallet: Wallet, pan: PAN, expiry: str, monkeypatch: pytest.MonkeyPatch
) -> int:
    """Register ``pan``, the CA answering in progress throughout: the version kept."""
    bank.issuer.review(pan)
    _saying_in_progress(monkeypatch)
    asked = _asked(wallet, monkeypatch)
    done = _registrar(wallet).register(pan, expiry, EC)
    assert (done.status, done.complete, done.masked_pan) == (IN_PROGRESS, False, pan.masked)
    assert len(asked) == POLLS  # asked about with CertInq, as a pended request is
    pending = _pending(wallet)
    assert "cert_request" not in pending  # only CertInq asks about it now
    version = int(pending["key_version"])
    assert _versions(wallet) == [(version, False)]
    return version


def test_a_request_in_progress_keeps_its_card_file_and_version_until_certified(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    version = _in_progress(bank, wallet, pan, expiry, monkeypatch)
    _decide(bank, wallet, approve=True)
    done = _registrar(wallet).register(pan, expiry, EC)
    assert done.complete
    assert _versions(wallet) == [(version, True)]
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is None and held.pan_secret is not None


def test_a_request_in_progress_goes_with_its_version_once_the_ca_refuses_it(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In progress is no refusal; the refusal CertInq reports later is."""
    pan, expiry = bank.new_card()
    _in_progress(bank, wallet, pan, expiry, monkeypatch)
    _decide(bank, wallet, approve=False)
    with pytest.raises(RegistrationError) as refused:
        _registrar(wallet).register(pan, expiry, EC)
    assert refused.value.status == REJECTED_BY_ISSUER
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()


def test_a_renewal_in_progress_keeps_the_current_certificate_and_its_version(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = new_wallet(bank, tmp_path / "registered", None)
    try:
        held = open_vault(registered.config.card_file, WALLET_PASSPHRASE)
        bank.issuer.review(held.pan)
        _saying_in_progress(monkeypatch)
        done = _registrar(registered).renew(EC)
        assert (done.status, done.complete) == (IN_PROGRESS, False)
        assert _versions(registered) == [(1, True), (2, False)]
        during = open_vault(registered.config.card_file, WALLET_PASSPHRASE)
        assert during.pending is not None and during.pan_secret == held.pan_secret

        _decide(bank, registered, approve=True)
        assert _registrar(registered).renew(EC).complete
        assert _versions(registered) == [(1, True), (2, True)]
    finally:
        registered.close()


def test_register_reports_a_request_in_progress_as_not_decided_yet(
    bank: RunningBank, wallet: Wallet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    setpay: Setpay,
) -> None:  # fmt: skip
    """The command's answer is a pended request's, exit 3, run register again later, in
    words that fit both: not decided yet (before: "pended by the Cardholder CA")."""
    pan, expiry = bank.new_card()
    bank.issuer.review(pan)
    _saying_in_progress(monkeypatch)
    card = tmp_path / "card.json"
    fd = os.open(card, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": pan.reveal(), "expiry": expiry}, handle)
    argv = ["wallet", "--dir", str(wallet.config.base_dir), "register", "--card", str(card)]
    status, out, err = setpay(argv)
    assert (status, err) == (EXIT_PENDED, ""), err
    assert out == (
        f"certificate request of card {pan.masked} not decided yet by the Cardholder CA "
        "(pended or in progress): run register again later\n"
    )
    assert len(_versions(wallet)) == 1 and _pending(wallet)


def test_renew_reports_a_renewal_in_progress_as_not_decided_yet(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setpay: Setpay
) -> None:
    """Before: "pended by the Cardholder CA", for a CA that said in progress."""
    registered = new_wallet(bank, tmp_path / "registered", None)
    try:
        held = open_vault(registered.config.card_file, WALLET_PASSPHRASE)
        bank.issuer.review(held.pan)
        _saying_in_progress(monkeypatch)
        status, out, err = setpay(["wallet", "--dir", str(registered.config.base_dir), "renew"])
        assert (status, err) == (EXIT_PENDED, ""), err
        assert out == (
            f"renewal of the certificate of card {held.pan.masked} not decided yet by the "
            "Cardholder CA (pended or in progress): run renew again later (the current "
            "certificate is used meanwhile)\n"
        )
        assert _versions(registered) == [(1, True), (2, False)]
    finally:
        registered.close()
