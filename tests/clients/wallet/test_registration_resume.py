"""A certificate request lost on the way, or whose answer was lost, does not strand the wallet.

Nor does it make a second certificate for the card: a resend the CA refuses after its
retention (its stored answer purged: RRPID_REUSED for a request it certified or pended,
MESSAGE_TOO_OLD for one it refused or never saw) is followed by a CertInq, and the wallet
registers again only when the CA holds no request for the registration (UNKNOWN_LID): it
never arrived, or the CA refused it (it keeps a refusal only as its answer, if at all).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.wallet.registration import CardholderRegistrar
from clients.wallet.runtime import Wallet
from clients.wallet.vault import open_vault, seal
from gateway.ca.policy import RESPONSE_RETENTION_MS
from setcore import freshness
from setcore.encoding import thumbprint
from setcore.error_message import build_error, open_error, request_digest
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS
from setcore.pan import PAN
from setcore.pki.roles import CARDHOLDER_CA
from setcore.profiles import EC, RSA, Profile
from setcore.purchase import header
from setcore.registration import REQUEST_PENDED, spki_of
from setpay.v1 import registration_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clocks import clocks_moved

CertCall = Callable[[registration_pb2.CertRequest], registration_pb2.CertResponse]
InqCall = Callable[[registration_pb2.CertInqRequest], registration_pb2.CertInqResponse]
# A CertInq sent and the CA's answer to it.
Inquiry = tuple[registration_pb2.CertInqRequest, registration_pb2.CertInqResponse]

# How long before the resend the first CertReq was sent: a day past the CA's retention of
# its answers, so the CA's housekeeping has purged the answer and the request's date is
# far outside the freshness window.
AFTER_RETENTION_MS = RESPONSE_RETENTION_MS + 24 * 60 * 60 * 1000


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


# -- a resend after the CA's retention ----------------------------------------------------


def _no_sleep(seconds: float) -> None:
    """Polls of a pended request run back to back in tests."""


def _ca_follows_moved_clocks(bank: RunningBank, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA's clock (fixed when the bank started) reads setcore's, which
    ``clocks_moved`` moves: the CA dates and judges requests by the moved time too."""

    def ca_clock() -> int:
        # Looked up at each call: ``clocks_moved`` replaces the module's function.
        return freshness.now_ms()

    monkeypatch.setattr(bank.authority, "_clock", ca_clock)
    monkeypatch.setattr(bank.authority._cardholder, "_clock", ca_clock)


def _ca_housekeeping(bank: RunningBank, rrpid: bytes) -> None:
    """The CA's sweep, run now: answers stored longer ago than the retention are purged
    (the one to ``rrpid`` among them)."""
    now = freshness.now_ms()
    with bank.ca_store.write() as tx:
        tx.purge(now, now - RESPONSE_RETENTION_MS)
    with bank.ca_store.read() as tx:
        assert tx.response(rrpid) is None


def _brand_certificates(bank: RunningBank) -> set[bytes]:
    """Thumbprints of every certificate the brand's CAs issued so far."""
    with bank.ca_store.read() as tx:
        return {issued.thumb for issued, _ in tx.listed_certificates()}


def _pending_rrpid(wallet: Wallet) -> bytes:
    pending = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert pending is not None
    return base64.b64decode(pending["rrpid"])


def _counting(real: InqCall, calls: list[Inquiry]) -> InqCall:
    def cert_inq(request: registration_pb2.CertInqRequest) -> registration_pb2.CertInqResponse:
        answer = real(request)
        calls.append((request, answer))
        return answer

    return cert_inq


def _refusal(wallet: Wallet, inquiry: Inquiry) -> int:
    """The code of the CA's signed Error in a CertInq answer."""
    request, answer = inquiry
    assert answer.WhichOneof("result") == "error"
    sent = request_digest(request.DESCRIPTOR.full_name, request.cert_inq_req)
    rrpid = answer.header.rrpid
    refused = open_error(answer.error, wallet.trust, CARDHOLDER_CA, rrpid=rrpid, request=sent)
    assert isinstance(refused, PeerError)
    return refused.code


def _registrar(wallet: Wallet) -> CardholderRegistrar:
    return CardholderRegistrar(
        wallet.config, wallet.backend, wallet.authority, wallet.trust, WALLET_PASSPHRASE,
        sleep=_no_sleep,
    )  # fmt: skip


def _certified_key(wallet: Wallet) -> tuple[bytes, bytes]:
    """The wallet's signature key (its SubjectPublicKeyInfo) and its certificate's thumbprint."""
    key = wallet.backend.get(wallet.config.key_label)
    der = wallet.backend.certificate(key)
    assert der is not None
    return spki_of(key.public_key), thumbprint(der)


def test_a_lost_answer_resent_after_the_retention_takes_the_issued_certificate(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA issued the certificate but its answer was lost, and by the resend it no
    longer holds the answer (RRPID_REUSED): CertInq gets that certificate, for the key
    the first request carried, and the card ends with it alone."""
    pan, expiry = bank.new_card()
    before = _brand_certificates(bank)
    _ca_follows_moved_clocks(bank, monkeypatch)
    clocks_moved(monkeypatch, -AFTER_RETENTION_MS)
    _register_once_failing(wallet, pan, expiry, _answer_lost(wallet.authority.cert), monkeypatch)
    first_key = spki_of(wallet.backend.get(wallet.config.key_label).public_key)
    issued = _brand_certificates(bank) - before
    assert len(issued) == 1
    clocks_moved(monkeypatch, 0)
    _ca_housekeeping(bank, _pending_rrpid(wallet))
    inquiries: list[Inquiry] = []
    monkeypatch.setattr(
        wallet.authority, "cert_inq", _counting(wallet.authority.cert_inq, inquiries)
    )

    done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)

    assert done.complete and _registered(wallet)
    assert _brand_certificates(bank) - before == issued
    assert done.certificate_thumb in issued
    assert _certified_key(wallet) == (first_key, done.certificate_thumb)
    assert len(inquiries) == 1


def test_a_request_that_never_reached_the_ca_registers_after_the_retention(
    bank: RunningBank,
    wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The CertReq never arrived: the resend is too old, CertInq finds no request
    (UNKNOWN_LID), and only then does the wallet register again, getting one certificate."""
    pan, expiry = bank.new_card()
    before = _brand_certificates(bank)
    _ca_follows_moved_clocks(bank, monkeypatch)
    clocks_moved(monkeypatch, -AFTER_RETENTION_MS)
    _register_once_failing(wallet, pan, expiry, _unreachable, monkeypatch)
    first_key = spki_of(wallet.backend.get(wallet.config.key_label).public_key)
    assert _brand_certificates(bank) == before
    clocks_moved(monkeypatch, 0)
    _ca_housekeeping(bank, _pending_rrpid(wallet))
    inquiries: list[Inquiry] = []
    monkeypatch.setattr(
        wallet.authority, "cert_inq", _counting(wallet.authority.cert_inq, inquiries)
    )

    with caplog.at_level(logging.WARNING, logger="setpay.wallet"):
        done = wallet.registrar(WALLET_PASSPHRASE).register(pan, expiry, EC)

    assert done.complete and _registered(wallet)
    # The CA was asked before the wallet registered again, and said it had no request.
    assert [_refusal(wallet, inquiry) for inquiry in inquiries] == [
        ErrorCode.ERROR_CODE_UNKNOWN_LID
    ]
    assert "registering again" in caplog.text and pan.reveal() not in caplog.text
    assert _brand_certificates(bank) - before == {done.certificate_thumb}
    key, certificate = _certified_key(wallet)
    assert certificate == done.certificate_thumb and key != first_key


def test_a_pended_request_resent_after_the_retention_stays_pended(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA pended the request and the answer was lost; after the retention the resend is
    refused, CertInq says pended, and the wallet keeps waiting on that request (exit
    status 3 from the command) instead of making another one."""
    pan, expiry = bank.new_card()
    bank.issuer.review(pan)
    before = _brand_certificates(bank)
    _ca_follows_moved_clocks(bank, monkeypatch)
    clocks_moved(monkeypatch, -AFTER_RETENTION_MS)
    _register_once_failing(wallet, pan, expiry, _answer_lost(wallet.authority.cert), monkeypatch)
    first = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert first is not None
    clocks_moved(monkeypatch, 0)
    _ca_housekeeping(bank, _pending_rrpid(wallet))

    pended = _registrar(wallet).register(pan, expiry, EC)

    assert pended.status == REQUEST_PENDED and not pended.complete
    now = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert now is not None and "cert_request" not in now
    assert (now["lid_ee"], now["lid_ca"]) == (first["lid_ee"], first["lid_ca"])
    status = bank.authority.decide_pending(
        base64.b64decode(first["lid_ee"]), base64.b64decode(first["lid_ca"]), approve=True
    )
    assert status == registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
    done = _registrar(wallet).register(pan, expiry, EC)
    assert done.complete and _registered(wallet)
    assert _brand_certificates(bank) - before == {done.certificate_thumb}


def test_a_cert_inq_refused_as_too_old_keeps_the_pended_request(
    bank: RunningBank, wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only UNKNOWN_LID to a CertInq means the CA has no request: any other Error (here
    MESSAGE_TOO_OLD, signed by the CA) is reported and the pended request kept."""
    pan, expiry = bank.new_card()
    bank.issuer.review(pan)
    assert _registrar(wallet).register(pan, expiry, EC).status == REQUEST_PENDED
    held = open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending
    assert held is not None and "cert_request" not in held

    def too_old(request: registration_pb2.CertInqRequest) -> registration_pb2.CertInqResponse:
        rrpid = request.header.rrpid
        error = build_error(
            bank.authority.error_signer(request), ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD,
            rrpid=rrpid, request=request_digest(request.DESCRIPTOR.full_name, request.cert_inq_req),
        )  # fmt: skip
        return registration_pb2.CertInqResponse(header=header(rrpid=rrpid), error=error)

    monkeypatch.setattr(wallet.authority, "cert_inq", too_old)
    with pytest.raises(PeerError) as caught:
        _registrar(wallet).register(pan, expiry, EC)
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    assert open_vault(wallet.config.card_file, WALLET_PASSPHRASE).pending == held


def test_a_request_refused_before_the_retention_registers_again(
    bank: RunningBank,
    wallet: Wallet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The CA refused the CertReq (an expiry that is not the card's) and the answer was
    lost; a refusal is kept only as its stored answer, so after the retention CertInq finds
    no request, as for one that never arrived. The wallet registers again, and says it
    cannot tell which of the two it was."""
    pan, _ = bank.new_card()
    not_the_cards = "203111"  # the account's expiry is EXPIRY
    _ca_follows_moved_clocks(bank, monkeypatch)
    clocks_moved(monkeypatch, -AFTER_RETENTION_MS)
    _register_once_failing(
        wallet, pan, not_the_cards, _answer_lost(wallet.authority.cert), monkeypatch
    )
    clocks_moved(monkeypatch, 0)
    _ca_housekeeping(bank, _pending_rrpid(wallet))
    inquiries: list[Inquiry] = []
    monkeypatch.setattr(
        wallet.authority, "cert_inq", _counting(wallet.authority.cert_inq, inquiries)
    )

    with caplog.at_level(logging.WARNING, logger="setpay.wallet"), pytest.raises(RegistrationError):
        wallet.registrar(WALLET_PASSPHRASE).register(pan, not_the_cards, EC)

    assert [_refusal(wallet, inquiry) for inquiry in inquiries] == [
        ErrorCode.ERROR_CODE_UNKNOWN_LID
    ]
    assert "never arrived, or was refused: the CA keeps no refused request" in caplog.text
    assert "week ago" not in caplog.text
    assert pan.reveal() not in caplog.text
