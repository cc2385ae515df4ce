"""Revocation: a new CRL and BCI in ca.db, served by GetBrandCRLIdentifier, enforced everywhere."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from cryptography import x509

from gateway.bank_pki import open_ca_store
from gateway.ca import (
    AlreadyRevoked,
    CaStore,
    CertificateAuthority,
    NotRevocable,
    RevocationWatcher,
    UnknownCertificate,
    publishing,
)
from gateway.ca import authority as ca_authority
from gateway.ca import cardholder as ca_cardholder
from gateway.ca import merchant as ca_merchant
from gateway.ca import watcher as ca_watcher
from gateway.ca.store import StoreTransaction
from hsm.base import KeyUsage
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id
from setcore.pki.bci import peek_sequence_num
from setcore.pki.roles import CARDHOLDER, MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration import key_thumbprint, spki_of
from setcore.registration_cardholder import build_card_c_init_request, open_card_cert_response
from setcore.registration_merchant import MerchantIdentity
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, Bank, serving
from .flows import (
    CARD_RENEWAL,
    MER_RENEWAL,
    REQUESTERS,
    card_request,
    certificates_naming,
    new_key,
    register_cardholder,
    register_merchant,
    start_cardholder,
    start_merchant,
)
from .revocation_support import (
    DUE_AGE,
    LAPSED_AGE,
    TokenGone,
    WallClock,
    authority_keys,
    bank_trust,
    new_ca_db,
    publish_dated,
)

S = registration_pb2
# How long the test waits for another process's revocation to show (the watcher polls
# every second); a bound for a hung test, not a speed requirement.
WAIT_SECONDS = 30


def _bci(bank: Bank) -> tuple[int, S.GetBrandCRLIdentifierResponse]:
    response = bank.stub.GetBrandCRLIdentifier(
        S.GetBrandCRLIdentifierRequest(brand_id=bank.brand_id)
    )
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(response.brand_crl_identifier, response.crls)
    assert trust.revocation is not None
    return trust.revocation.sequence_num, response


def _refused_as_revoked(bank: Bank, response: S.GetBrandCRLIdentifierResponse, der: bytes,
                        chain: tuple[bytes, ...], role: int) -> None:  # fmt: skip
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(response.brand_crl_identifier, response.crls)
    with pytest.raises(ProtocolError) as caught:
        trust.verify_chain(der, chain, role, CertificateUsage.SIGNATURE)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revocation_publishes_a_new_bci_that_refuses_the_certificate(bank: Bank) -> None:
    outcome, *_ = register_cardholder(bank, CARD, EXPIRY)
    assert outcome.certificate is not None
    # The served CA polls ca.db once a second: a revocation another test made through
    # another connection just before would otherwise reach it during this test.
    bank.ca.watcher.check(force=True)
    before, old = _bci(bank)
    # Before: a trust store fed with the current BCI accepts the certificate.
    trust = TrustStore(bank.pki.root_der)
    trust.update_revocation(old.brand_crl_identifier, old.crls)
    trust.verify_chain(outcome.certificate.der, outcome.chain, CARDHOLDER, "signature")
    revoked = bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    assert revoked.serial == outcome.certificate.serial_number
    after, response = _bci(bank)
    assert after == before + 1
    _refused_as_revoked(bank, response, outcome.certificate.der, outcome.chain, CARDHOLDER)
    # The CA's own trust store refuses it at once too: renewing it is refused.
    with pytest.raises(ProtocolError) as caught:
        bank.pki.trust.verify_chain(outcome.certificate.der, outcome.chain, CARDHOLDER, "signature")
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revoked_certificate_cannot_be_renewed(ec_bank: Bank) -> None:
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.certificate is not None
    old = first.credentials(REQUESTERS, key)
    ec_bank.ca.revoke(serial=first.certificate.serial_number)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, renewing=old
    )
    response = ec_bank.stub.Cert(request)
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(response, state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_revoke_refusals(ec_bank: Bank) -> None:
    outcome, *_ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert outcome.certificate is not None
    ec_bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    with pytest.raises(AlreadyRevoked):
        ec_bank.ca.revoke(thumb=outcome.certificate.thumbprint)
    with pytest.raises(UnknownCertificate):
        ec_bank.ca.revoke(thumb=b"\x01" * 32)
    with pytest.raises(UnknownCertificate):
        ec_bank.ca.revoke(serial=1)
    with pytest.raises(NotRevocable):
        ec_bank.ca.revoke(thumb=thumbprint(ec_bank.pki.root_der))


def test_revocation_in_another_process_reaches_the_serving_process(ec_bank: Bank) -> None:
    identity = MerchantIdentity("m-revoked-elsewhere", "Elsewhere Ltd")
    outcome, *_ = register_merchant(ec_bank, identity)
    assert outcome.signature is not None
    before, _ = _bci(ec_bank)
    serial = x509.load_der_x509_certificate(outcome.signature.der).serial_number
    script = (
        "import argparse, sys\n"
        "from cli import ca\n"
        "parser = argparse.ArgumentParser()\n"
        "ca.add_parser(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(ca.run(args))\n"
    )
    colon_hex = ":".join(f"{b:02X}" for b in serial.to_bytes((serial.bit_length() + 7) // 8))
    result = subprocess.run(
        [sys.executable, "-c", script, "ca", "revoke", "--config", str(ec_bank.config.base_dir /
         "setpay.toml"), "--serial", colon_hex],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        after, response = _bci(ec_bank)
        if after > before or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after == before + 1
    _refused_as_revoked(ec_bank, response, outcome.signature.der, outcome.chain, MERCHANT)
    with pytest.raises(ProtocolError) as caught:
        ec_bank.pki.trust.verify_chain(outcome.signature.der, outcome.chain, MERCHANT, "signature")
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


def test_get_certificates_by_thumbprint(ec_bank: Bank) -> None:
    wanted = [ec_bank.pki.cca.signature_thumb, ec_bank.pki.gateway.signature_thumb, b"\x00" * 32]
    response = ec_bank.stub.GetCertificates(S.GetCertificatesRequest(thumbs=wanted))
    assert list(response.certificates) == [
        ec_bank.pki.cca.signature_cert,
        ec_bank.pki.gateway.signature_cert,
    ]


# -- a revocation committed while a renewal is being decided --------------------------------


@contextmanager
def _reading(bank: Bank) -> Iterator[StoreTransaction]:
    """A read transaction on the bank's ca.db, through a connection of its own."""
    store = open_ca_store(bank.config)
    try:
        with store.read() as tx:
            yield tx
    finally:
        store.close()


def _revoke_elsewhere(bank: Bank, thumbs: Sequence[bytes]) -> None:
    """Revoke as ``setpay ca revoke`` does: another connection to ca.db, the served CA's
    watcher not told."""
    store = open_ca_store(bank.config)
    try:
        for thumb in thumbs:
            publishing.revoke(store, bank.pki.authority_keys(), thumb=thumb)
    finally:
        store.close()


def _revoked_after_verifying(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, revoke: Callable[[], None]
) -> None:
    """Make ``module.name`` (the CA's verification of a CertReq) revoke once it verified.

    The CA verifies a CertReq's chains against its process's trust store before it takes
    ca.db's write lock to decide; an operator's revocation (or another worker's) can
    commit in between, and the trust store learns of it only at the watcher's next poll.
    """
    real = getattr(module, name)

    def verified_then_revoked(*args: Any, **kwargs: Any) -> Any:
        verified = real(*args, **kwargs)
        revoke()
        return verified

    monkeypatch.setattr(module, name, verified_then_revoked)


def test_a_merchant_renewal_decided_after_its_certificate_was_revoked_is_refused(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator revoked a merchant's certificates so that its ID may go to a new holder
    (the one-holder rule); a renewal signed by the revoked key must not certify the old
    holder again, however close to the revocation it arrives."""
    identity = MerchantIdentity(f"m-renews-revoked-{new_id().hex()[:8]}", "Late Ltd")
    first, state, _ = register_merchant(ec_bank, identity)
    assert first.signature is not None and first.key_exchange is not None
    old = first.credentials(REQUESTERS, state)
    held = certificates_naming(ec_bank, identity.merchant_id)
    session = start_merchant(ec_bank, identity, request_type=MER_RENEWAL)
    revoked = (first.signature.thumbprint, first.key_exchange.thumbprint)
    _revoked_after_verifying(
        monkeypatch, ca_merchant, "verify_merchant_cert_request",
        lambda: _revoke_elsewhere(ec_bank, revoked),
    )  # fmt: skip
    sig, kex = new_key(ec_bank, KeyUsage.SIGNATURE), new_key(ec_bank, KeyUsage.KEY_EXCHANGE)
    with pytest.raises(PeerError) as caught:
        register_merchant(ec_bank, identity, session=session, keys=(sig, kex), renewing=old)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    # Nothing was issued, nothing taken: the ID is free for its new holder.
    assert certificates_naming(ec_bank, identity.merchant_id) == held
    with _reading(ec_bank) as tx:
        assert not any(tx.key_claimed(key_thumbprint(spki_of(k.public_key))) for k in (sig, kex))
    assert ec_bank.issuer.merchants.count(identity.subject) == 1


def test_a_cardholder_renewal_decided_after_its_certificate_was_revoked_is_refused(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race for a cardholder: the revoked certificate's key renews nothing."""
    first, _, key, _ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.certificate is not None
    old = first.credentials(REQUESTERS, key)
    session = start_cardholder(ec_bank, CARD, request_type=CARD_RENEWAL)
    thumb = first.certificate.thumbprint
    _revoked_after_verifying(
        monkeypatch, ca_cardholder, "verify_card_cert_request",
        lambda: _revoke_elsewhere(ec_bank, (thumb,)),
    )  # fmt: skip
    new = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, new, CARD, EXPIRY, renewing=old)
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE
    with _reading(ec_bank) as tx:
        assert not tx.key_claimed(key_thumbprint(spki_of(new.public_key)))


# -- a refresh that fails ---------------------------------------------------------------


@contextmanager
def _refreshing_ca(
    bank: Bank, tmp_path: Path, token: TokenGone, monkeypatch: pytest.MonkeyPatch,
    wall: WallClock | None = None,
) -> Iterator[tuple[CertificateAuthority, CaStore]]:  # fmt: skip
    """A CA of the bank's keys, the key backend behind ``token``, on a ca.db of its own
    just published; its watcher polls on every call (and dates by ``wall``)."""
    options: dict[str, Any] = {"interval_s": 0}
    if wall is not None:
        options["wall_clock"] = wall
    monkeypatch.setattr(ca_authority, "RevocationWatcher", partial(RevocationWatcher, **options))
    store = new_ca_db(tmp_path / "ca.db", bank.pki)
    try:
        keys = authority_keys(bank.pki, token)
        yield CertificateAuthority(keys, store, bank_trust(bank.pki), bank.issuer), store
    finally:
        store.close()


def test_a_refresh_the_token_fails_leaves_the_ca_serving_while_its_bci_is_current(
    ec_bank: Bank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The token is gone when the BCI comes due: the refresh fails, is logged and put off,
    and every request is answered as usual; the BCI held has hours left."""
    token = TokenGone(ec_bank.pki.backend)
    with _refreshing_ca(ec_bank, tmp_path, token, monkeypatch) as (ca, store):
        publish_dated(store, ec_bank.pki, DUE_AGE)  # ca.db's newest BCI is due, and current
        with serving(ca) as stub, caplog.at_level(logging.WARNING):
            served = replace(ec_bank, ca=ca, stub=stub)
            session = start_cardholder(served, CARD)  # CardCInit, RegForm: signed, stapled
            assert session.trust.revocation is not None
            assert session.trust.revocation.sequence_num == 2
            sequence, _ = _bci(served)
            assert sequence == 2
            # Answered (this ca.db of its own records no certificate to find).
            found = stub.GetCertificates(
                S.GetCertificatesRequest(thumbs=[ec_bank.pki.cca.signature_thumb])
            )
            assert list(found.certificates) == []
    # Tried once, then put off (REFRESH_RETRY_S), not tried again on every call.
    assert token.failed_signs == 1
    assert (ca.watcher.counters.publish_failures, ca.watcher.counters.install_failures) == (1, 0)
    failures = [r.getMessage() for r in caplog.records if r.name == ca_watcher.__name__]
    assert len(failures) == 1 and "TransientBackendError" in failures[0], failures


def test_the_ca_answers_unavailable_once_its_revocation_data_lapsed(
    ec_bank: Bank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token stays away until the BCI held is past its notAfter: from then on every
    method is UNAVAILABLE (fixed text), never a signed Error; it serves again as soon as
    a refresh succeeds."""
    token, wall = TokenGone(ec_bank.pki.backend), WallClock()
    with (
        _refreshing_ca(ec_bank, tmp_path, token, monkeypatch, wall) as (ca, _),
        serving(ca) as stub,
    ):
        wall.ahead = LAPSED_AGE
        calls = (
            lambda: stub.CardCInit(build_card_c_init_request(ec_bank.brand_id, b"lid")[0]),
            lambda: stub.GetBrandCRLIdentifier(
                S.GetBrandCRLIdentifierRequest(brand_id=ec_bank.brand_id)
            ),
            lambda: stub.GetCertificates(
                S.GetCertificatesRequest(thumbs=[ec_bank.pki.cca.signature_thumb])
            ),
        )
        for call in calls:
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            details = failed.value.details()  # type: ignore[attr-defined]
            assert details == "certificate authority revocation data unavailable"
        # With nothing current, every call tries again, without a pause.
        assert token.failed_signs == len(calls)
        token.gone = False
        response = stub.GetBrandCRLIdentifier(
            S.GetBrandCRLIdentifierRequest(brand_id=ec_bank.brand_id)
        )
        assert peek_sequence_num(response.brand_crl_identifier) == 2


def test_a_failed_refresh_is_tried_again_after_a_pause(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Polls go on every second; the re-publishing that failed waits REFRESH_RETRY_S, and
    its failure is logged once per try, not once per poll."""
    token, wall, ticks = TokenGone(ec_bank.pki.backend), WallClock(), [0.0]
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    trust = bank_trust(ec_bank.pki)
    try:
        watcher = RevocationWatcher(
            store, trust, keys=authority_keys(ec_bank.pki, token),
            clock=lambda: ticks[0], wall_clock=wall,
        )  # fmt: skip
        assert watcher.check()  # BCI 1 installed; nothing due
        wall.ahead = DUE_AGE
        with caplog.at_level(logging.WARNING, logger=ca_watcher.__name__):
            for _ in range(5):
                ticks[0] += ca_watcher.POLL_INTERVAL_S
                assert not watcher.check()
            assert token.failed_signs == 1
            ticks[0] += ca_watcher.REFRESH_RETRY_S
            watcher.check()
            assert token.failed_signs == 2
        assert len(caplog.records) == 2
        assert (watcher.counters.publish_failures, watcher.counters.install_failures) == (2, 0)
        token.gone = False
        ticks[0] += ca_watcher.REFRESH_RETRY_S
        assert watcher.check()
        assert trust.revocation is not None and trust.revocation.sequence_num == 2
    finally:
        store.close()
