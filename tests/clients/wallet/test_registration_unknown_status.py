"""A Cardholder CA of a later release answers with a CertStatusCode this one does not know.

Real bank, real CA over gRPC and TLS; the CA's answers are built by its own code, signed
with its own key and sealed under the wallet's back key, with the status replaced by one
no release of this build defines (``LATER``). The wallet reads such an answer, once
verified, as an outcome unknown (pended or refused, it cannot tell): the registrar
raises ``RegistrationOutcomeUnknown`` saying so, stores no certificate and keeps the
pending request in the sealed card file, so the next run asks about the same request.
The same answer failing a check (Chall-EE3 not echoed, a wrong signature) is refused as
any answer is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clients.errors import RegistrationOutcomeUnknown
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault
from gateway.ca import cardholder as ca_cardholder
from setcore.credentials import Credentials
from setcore.envelope import seal_with_key
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.profiles import EC
from setcore.registration_certreq import CERT_RES_CT, CertAnswer, sign_cert_result
from setpay.v1 import crypto_pb2
from tests.clients.authority_calls import sent_cert_requests
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet

# A CertStatusCode no release of this build defines.
LATER = 42
Alter = Callable[[crypto_pb2.Signed], None]


def _answering(
    monkeypatch: pytest.MonkeyPatch, alter: Alter | None = None, *, chall_ee3: bytes = b""
) -> None:
    """The Cardholder CA answers every CertReq and CertInq with status LATER, signed and
    sealed as any answer (``chall_ee3``: echoed in place of the request's; ``alter``:
    applied to the signed answer before it is sealed)."""

    def later(ca: Credentials, back_key: bytes, answer: CertAnswer, status: int, *,
              revocation: object, certificate: bytes | None = None, nonce_cca: bytes = b"",
              ee_message: str = "") -> bytes:  # fmt: skip
        if chall_ee3:
            answer = replace(answer, chall_ee3=chall_ee3)
        issued = () if certificate is None else (certificate,)
        signed = sign_cert_result(
            ca, answer, LATER, revocation=revocation, certificates=issued,  # type: ignore[arg-type]
            nonce_cca=nonce_cca,
        )  # fmt: skip
        if alter is not None:
            alter(signed)
        sealed = seal_with_key(CERT_RES_CT, signed.SerializeToString(), back_key,
                               rrpid=answer.rrpid)  # fmt: skip
        return sealed.SerializeToString()

    monkeypatch.setattr(ca_cardholder, "build_card_cert_response", later)


def _bad_signature(signed: crypto_pb2.Signed) -> None:
    value = bytearray(signed.signatures[0].value)
    value[10] ^= 0x01  # inside r: a well-formed signature, of other bytes
    signed.signatures[0].value = bytes(value)


@pytest.fixture
def wallet(bank: RunningBank, tmp_path: Path) -> Iterator[Wallet]:
    """A wallet with no card registered yet."""
    made = new_wallet(bank, tmp_path / "wallet", None, register=False)
    yield made
    made.close()


def _certificates(wallet: Wallet) -> dict[tuple[str, int], bytes | None]:
    """Every key version of the wallet and the certificate stored beside it."""
    backend = wallet.backend
    return {(key.label, key.version): backend.certificate(key) for key in backend.list_keys()}


def _no_certificate(wallet: Wallet) -> bool:
    return set(_certificates(wallet).values()) <= {None}


def test_an_unknown_status_is_an_outcome_unknown_and_installs_nothing(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    _answering(monkeypatch)  # the CA certifies, and says so with a later status
    sent = sent_cert_requests(monkeypatch)
    registrar = wallet.registrar(WALLET_PASSPHRASE)

    with pytest.raises(RegistrationOutcomeUnknown) as unknown:
        registrar.register(pan, expiry, EC)
    message = str(unknown.value)
    assert message.startswith("the Cardholder CA answered the certificate request with "
                              "CertStatusCode 42, a status this release of setpay does not "
                              "know"), message  # fmt: skip
    for said in (
        "the outcome is unknown", "may have pended or refused the request",
        "no certificate was installed",
        "Upgrade setpay, then run `setpay wallet register --card CARD.json` again",
        "the pending request is kept in the sealed card file",
    ):  # fmt: skip
        assert said in message, message
    assert unknown.value.status == LATER
    assert pan.reveal() not in message
    assert len(sent) == 1  # asked once, not again by itself
    assert _no_certificate(wallet)
    assert not wallet.config.chain.exists()
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE)
    assert held.pan_secret is None and held.pending is not None
    assert "cert_request" in held.pending  # the request is kept, as it was sent

    # The next run asks about the same request (its very bytes), once, and reads the
    # CA's answer: still a status this release does not know.
    with pytest.raises(RegistrationOutcomeUnknown):
        registrar.register(pan, expiry, EC)
    assert sent == [sent[0], sent[0]]
    assert _no_certificate(wallet)
    assert open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending == held.pending


def test_an_unknown_status_not_echoing_chall_ee3_is_refused_not_unknown(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    _answering(monkeypatch, chall_ee3=new_id())
    with pytest.raises(ProtocolError) as refused:
        wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert refused.value.code == ErrorCode.ERROR_CODE_CHALLENGE_MISMATCH, refused.value
    assert refused.value.reason == "Chall-EE3 not echoed"
    assert _no_certificate(wallet)


def test_an_unknown_status_under_a_wrong_signature_is_refused_not_unknown(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pan, expiry = bank.new_card()
    _answering(monkeypatch, _bad_signature)
    with pytest.raises(ProtocolError) as refused:
        wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)
    assert refused.value.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, refused.value
    assert _no_certificate(wallet)


def test_a_renewal_answered_with_an_unknown_status_keeps_the_current_certificate(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = new_wallet(bank, tmp_path / "registered", None)
    try:
        before = open_vault(registered.config.card_file, WALLET_PASSPHRASE)
        certified = _certificates(registered)
        chain = registered.config.chain.read_bytes()
        _answering(monkeypatch)
        with pytest.raises(RegistrationOutcomeUnknown) as unknown:
            registered.registrar(WALLET_PASSPHRASE).renew(EC)
        assert "run `setpay wallet renew` again" in str(unknown.value)
        after = open_vault(registered.config.card_file, WALLET_PASSPHRASE)
        # The card buys with its current certificate; the renewal's new key version is
        # kept, uncertified, for the request kept beside the card.
        assert after.pan_secret == before.pan_secret and after.pending is not None
        now = _certificates(registered)
        assert {k: v for k, v in now.items() if k in certified} == certified
        assert [v for k, v in now.items() if k not in certified] == [None]
        assert registered.config.chain.read_bytes() == chain
    finally:
        registered.close()
