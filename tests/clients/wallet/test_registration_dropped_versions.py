"""A registration dropped without a certificate takes its key version with it.

``register`` kept the new key version of a request it dropped: one the Cardholder CA
refused (a verified CertRes refusing it, to the first send or to a pended request's
CertInq), and one the CA said it holds nothing of (CertInq answered UNKNOWN_LID). The card
file went, so no run sends that request again and no CA will ever certify the version:
each such attempt left one more (on a token, a slot for good), as ``renew`` never did. A
request whose answer was lost is not dropped: it keeps its version until the CA's word.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault, seal
from setcore.pan import PAN
from setcore.profiles import EC
from setcore.registration import REQUEST_PENDED
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet

REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
# An expiry that is not the card's (the bank's accounts end in EXPIRY): the issuer refuses.
NOT_THE_CARDS = "203111"


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A configured wallet with no card yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _versions(wallet: Wallet) -> list[tuple[int, bool]]:
    """Each version of the wallet's signature key, certified or not, and whether a
    certificate names it."""
    label = wallet.config.key_label
    return [
        (key.version, wallet.backend.certificate(key) is not None)
        for key in wallet.backend.list_keys()
        if key.label == label
    ]


def _no_sleep(seconds: float) -> None:
    """Polls of a pended request run back to back in tests."""


def _registrar(wallet: Wallet) -> CardholderRegistrar:
    return CardholderRegistrar(
        wallet.config, wallet.backend, wallet.authority, wallet.trust, WALLET_PASSPHRASE,
        sleep=_no_sleep,
    )  # fmt: skip


def _pending(wallet: Wallet) -> dict[str, str]:
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None
    return pending


def _once_failing(
    wallet: Wallet,
    pan: PAN,
    expiry: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    reaches_the_ca: bool,
) -> int:
    """Register with the CertReq lost on the way, or its answer lost after the CA decided
    it (``reaches_the_ca``); the version its pending state names, kept uncertified."""
    real = wallet.authority.cert

    def lost(request: registration_pb2.CertRequest) -> registration_pb2.CertResponse:
        if reaches_the_ca:
            real(request)
        raise TransportError("CA Cert", "DEADLINE_EXCEEDED")

    with monkeypatch.context() as patch:
        patch.setattr(wallet.authority, "cert", lost)
        with pytest.raises(TransportError):
            _registrar(wallet).register(pan, expiry, EC)
    version = int(_pending(wallet)["key_version"])
    assert _versions(wallet) == [(version, False)]
    return version


def _certified_alone(wallet: Wallet, pan: PAN, expiry: str) -> None:
    """The card registers after the dropped attempt, leaving one version: certified."""
    assert _registrar(wallet).register(pan, expiry, EC).complete
    [(_, certified)] = _versions(wallet)
    assert certified


# -- case 1: a CertInq answered UNKNOWN_LID -----------------------------------------------


def _unheard_of(wallet: Wallet, pan: PAN, expiry: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A pending registration the CA never received, sealed without its request's bytes
    (as wallets did before): resumed, it is asked about with CertInq, answered UNKNOWN_LID."""
    version = _once_failing(wallet, pan, expiry, monkeypatch, reaches_the_ca=False)
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pending is not None
    keep = {
        k: v for k, v in held.pending.items() if k not in ("cert_request", "rrpid", "chall_ee3")
    }
    seal(wallet.config.card_file, type(held)(pan, expiry, held.card_secret, None, keep),
         WALLET_PASSPHRASE)  # fmt: skip
    return version


def test_a_request_the_ca_holds_nothing_of_takes_its_version_with_it(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNKNOWN_LID, then the registration made again is certified: its version alone is
    left (the dropped request's version went before the new one was made)."""
    pan, expiry = bank.new_card()
    _unheard_of(wallet, pan, expiry, monkeypatch)
    _certified_alone(wallet, pan, expiry)


def test_the_version_goes_even_when_the_new_attempt_fails(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNKNOWN_LID drops the request at once: a new attempt that then fails before its
    CertReq (the CA unreachable for CardCInit) leaves no version and no card file."""
    pan, expiry = bank.new_card()
    _unheard_of(wallet, pan, expiry, monkeypatch)

    def down(*args: object, **kwargs: object) -> object:
        raise TransportError("CA CardCInit", "UNAVAILABLE")

    with monkeypatch.context() as patch:
        patch.setattr(wallet.authority, "card_c_init", down)
        with pytest.raises(TransportError):
            _registrar(wallet).register(pan, expiry, EC)
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()
    _certified_alone(wallet, pan, expiry)


# -- case 2: a verified refusal ----------------------------------------------------------


def test_a_refused_first_send_leaves_no_version(bank: RunningBank, wallet: Wallet) -> None:
    pan, expiry = bank.new_card()
    for _ in range(2):
        with pytest.raises(RegistrationError) as refused:
            _registrar(wallet).register(pan, NOT_THE_CARDS, EC)
        assert refused.value.status == REJECTED_BY_ISSUER
        assert _versions(wallet) == []
        assert not wallet.config.card_file.exists()
    _certified_alone(wallet, pan, expiry)


def test_a_pended_request_keeps_its_version_until_it_is_refused(
    bank: RunningBank, wallet: Wallet
) -> None:
    """Pended, the request may still be certified: its version is kept. Refused by the
    issuer's reviewer, CertInq's verified refusal drops it and its version."""
    pan, expiry = bank.new_card()
    bank.issuer.review(pan)
    assert _registrar(wallet).register(pan, expiry, EC).status == REQUEST_PENDED
    pending = _pending(wallet)
    assert _versions(wallet) == [(int(pending["key_version"]), False)]
    lids = base64.b64decode(pending["lid_ee"]), base64.b64decode(pending["lid_ca"])
    assert bank.authority.decide_pending(*lids, approve=False) == REJECTED_BY_ISSUER

    with pytest.raises(RegistrationError) as refused:
        _registrar(wallet).register(pan, expiry, EC)
    assert refused.value.status == REJECTED_BY_ISSUER
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()


# -- a lost answer is not a drop ---------------------------------------------------------


def test_a_refusal_whose_answer_was_lost_keeps_the_version_until_it_is_heard(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA refused and the answer was lost: the version stays with the pending state;
    the resend gets the stored refusal, and only then does the version go."""
    pan, expiry = bank.new_card()
    _once_failing(wallet, pan, NOT_THE_CARDS, monkeypatch, reaches_the_ca=True)
    with pytest.raises(RegistrationError) as refused:
        _registrar(wallet).register(pan, NOT_THE_CARDS, EC)
    assert refused.value.status == REJECTED_BY_ISSUER
    assert _versions(wallet) == []
    assert not wallet.config.card_file.exists()
    _certified_alone(wallet, pan, expiry)


@pytest.mark.parametrize("reaches_the_ca", [True, False], ids=["answer-lost", "request-lost"])
def test_a_lost_request_or_answer_is_certified_under_the_kept_version(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch, reaches_the_ca: bool
) -> None:
    pan, expiry = bank.new_card()
    version = _once_failing(wallet, pan, expiry, monkeypatch, reaches_the_ca=reaches_the_ca)
    assert _registrar(wallet).register(pan, expiry, EC).complete
    assert _versions(wallet) == [(version, True)]
