"""The CA's own failures through the real gRPC server: a bug is never an outage.

ca.db refusing a change (``ConstraintViolation``) is a bug: its checks and the change are
made in one serialized write transaction (``test_store_constraints``). Such a request
used to be answered UNAVAILABLE, which has the requester send the same bytes into the
same bug; now it is answered as every bug is: a signed UNSPECIFIED_FAILURE Error, or
INTERNAL on the two unsigned reads, which have no Error to carry; the traceback goes to
the log, no request data with it. Requests that truly race (the same CertReq in two
workers at once) get what one after the other would.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority, RevocationWatcher
from gateway.ca import cardholder as ca_cardholder
from gateway.ca import errors as ca_errors
from gateway.ca import servicer as ca_servicer
from gateway.ca import watcher as ca_watcher
from gateway.ca.store import CaStore, StoreTransaction
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id
from setcore.pki import issuance
from setcore.registration import ca_error
from setcore.registration_cardholder import (
    CardRequestState,
    build_card_c_init_request,
    open_card_cert_response,
)
from setpay.v1 import registration_pb2

from .conftest import CARD, EXPIRY, Bank, serving
from .flows import (
    CardSession,
    card_request,
    new_key,
    new_trust,
    register_cardholder,
    sent_digest,
    start_cardholder,
)
from .revocation_support import DUE_AGE, WallClock, authority_keys, bank_trust, new_ca_db

S = registration_pb2
UNSPECIFIED_FAILURE = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE
# The form the Cardholder CA hands out asks for the cardholder's name (CaPolicy).
FILLED = (("cardholder-name", "A. Tester"), ("billing-postcode", "X1 1XX"))
# How long the race waits for both workers to queue for ca.db's write lock; the busy
# timeout (store.BUSY_TIMEOUT_MS, five seconds) must not run out meanwhile.
QUEUE_WAIT_S = 4.0


def _answered(call: Callable[[], object]) -> object:
    """The call's response; a gRPC status instead fails the test with it."""
    try:
        return call()
    except grpc.RpcError as exc:
        pytest.fail(f"answered {exc.code()} ({exc.details()}), not as a bug")  # type: ignore[attr-defined]


def _bug_logged(caplog: pytest.LogCaptureFixture, words: str) -> None:
    """One error logged, with the ConstraintViolation's traceback naming ``words``."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ca_errors.ConstraintViolation)
    assert words in caplog.text


def test_a_lid_ca_drawn_twice_is_answered_as_a_bug(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """LID-CA is the CA's own random label: two sessions drawing one is no race a peer
    can cause, and resending the CardCInitReq cannot help."""
    drawn = new_id()
    monkeypatch.setattr(ca_cardholder, "new_id", lambda: drawn)
    first, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee-first")
    assert ec_bank.stub.CardCInit(first).WhichOneof("result") == "card_c_init_res"
    second, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee-second")
    with caplog.at_level(logging.INFO):
        response = _answered(lambda: ec_bank.stub.CardCInit(second))
    assert isinstance(response, S.CardCInitResponse)
    assert response.WhichOneof("result") == "error"
    trust = new_trust(ec_bank)
    error = ca_error(
        response.error, trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, second.rrpid,
        request=sent_digest(second),
    )  # fmt: skip
    assert error.code == UNSPECIFIED_FAILURE
    _bug_logged(caplog, "sessions.lid_ca")


def test_a_serial_drawn_twice_is_answered_as_a_bug_and_changes_nothing(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The serial number is the CA's own draw too. The CertReq that meets it is refused
    with a signed Error, the PAN it carries stays out of the log, and nothing of it was
    kept: with serials drawn at random again the same bytes are decided afresh."""
    serial = issuance.random_serial()
    monkeypatch.setattr(issuance, "random_serial", lambda: serial)
    first, *_ = register_cardholder(ec_bank, CARD, EXPIRY)
    assert first.complete
    session = start_cardholder(ec_bank, CARD)
    key = new_key(ec_bank, KeyUsage.SIGNATURE)
    request, state = card_request(session, key, CARD, EXPIRY, filled=FILLED)
    with caplog.at_level(logging.INFO):
        response = _answered(lambda: ec_bank.stub.Cert(request))
    assert isinstance(response, S.CertResponse)
    with pytest.raises(PeerError) as refused:
        open_card_cert_response(response, state, session.trust)
    assert refused.value.code == UNSPECIFIED_FAILURE
    _bug_logged(caplog, "certificates.serial")
    assert CARD not in caplog.text
    monkeypatch.undo()
    assert open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust).complete


def test_an_unsigned_read_failing_on_a_bug_is_internal_without_its_words(
    ec_bank: Bank, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GetCertificates has no SET Error to answer with: INTERNAL, with a fixed text, not
    gRPC's UNKNOWN carrying the exception's own words to the peer."""
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    thumb = b"\x5a" * 32
    # A row no code of ours writes: its serial is not hexadecimal, so reading it fails.
    db = sqlite3.connect(store.path)
    db.execute(
        "INSERT INTO certificates VALUES (?, 'not-a-serial', ?, 1, 'signature', 's', x'00', 0, 0)",
        (thumb, thumb),
    )
    db.commit()
    db.close()
    try:
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), ec_bank.issuer)
        with (
            serving(ca) as stub,
            caplog.at_level(logging.ERROR, logger=ca_servicer.__name__),
            pytest.raises(grpc.RpcError) as failed,
        ):
            stub.GetCertificates(S.GetCertificatesRequest(thumbs=[thumb]))
    finally:
        store.close()
    assert failed.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority internal error"  # type: ignore[attr-defined]
    # The servicer's alone: the server's health says NOT_SERVING as it stops.
    (record,) = [r for r in caplog.records if r.name == ca_servicer.__name__]
    assert record.exc_info is not None and "not-a-serial" in caplog.text


def test_a_constraint_violation_while_re_publishing_is_logged_with_its_traceback(
    ec_bank: Bank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The watcher logs the failures of the parts it uses (ca.db or the token away) in a
    line; a change ca.db refuses is a bug, and its traceback is logged with it."""
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    wall, trust = WallClock(), bank_trust(ec_bank.pki)
    try:
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        watcher = RevocationWatcher(store, trust, keys=keys, interval_s=0, wall_clock=wall)
        assert watcher.check()  # BCI 1 installed; nothing due
        wall.ahead = DUE_AGE
        # The bug: the next BCI numbered as if none had been published.
        monkeypatch.setattr(StoreTransaction, "latest_bci_sequence", lambda self: 0)
        with caplog.at_level(logging.WARNING, logger=ca_watcher.__name__):
            watcher.check()  # the BCI held is still current: no request fails
    finally:
        store.close()
    assert watcher.counters.publish_failures == 1
    (record,) = caplog.records
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ca_errors.ConstraintViolation)
    assert "bcis.sequence_num" in caplog.text


def _race(ca_stores: list[tuple[CertificateAuthority, CaStore]], requests: list[S.CertRequest]
          ) -> list[bytes | ProtocolError]:  # fmt: skip
    """Each worker (a CA on a ca.db connection of its own) takes one request; both are
    past every check and queued for ca.db's write lock before either may write."""
    queued = threading.Semaphore(0)

    def trace(statement: str) -> None:
        if statement == "BEGIN IMMEDIATE":
            queued.release()

    outcomes: list[bytes | ProtocolError] = []
    locker = sqlite3.connect(ca_stores[0][1].path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # held as ``setpay ca revoke`` would hold it
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            futures = []
            for (ca, store), request in zip(ca_stores, requests, strict=True):
                store._db.set_trace_callback(trace)
                futures.append(pool.submit(ca.cert, request))
            queued_all = all(queued.acquire(timeout=QUEUE_WAIT_S) for _ in requests)
            locker.execute("ROLLBACK")
            for future in futures:
                try:
                    outcomes.append(future.result())
                except ProtocolError as exc:
                    outcomes.append(exc)
        assert queued_all, "a worker answered before it queued for the write lock"
    finally:
        locker.close()
        for _, store in ca_stores:
            store._db.set_trace_callback(None)
    return outcomes


def test_the_same_rrpid_in_two_workers_at_once_gets_what_one_after_the_other_would(
    ec_bank: Bank,
) -> None:
    """Two workers take the same CertReq, then two requests under one RRPID, at once: the
    one that writes second finds the first's answer in its own transaction, as a retry
    would, and never meets a constraint. (The race the protocol defines: it was answered
    so before this change too; this pins what the change relies on.)"""
    stores = [open_ca_store(ec_bank.config) for _ in range(2)]
    try:
        workers = []
        for store in stores:
            ca = CertificateAuthority(
                ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer
            )
            ca.certificates([])  # a worker's first call sweeps ca.db: done before the race
            workers.append((ca, store))

        def request(session: CardSession, rrpid: bytes | None = None) -> tuple[
            S.CertRequest, CardRequestState
        ]:  # fmt: skip
            key = new_key(ec_bank, KeyUsage.SIGNATURE)
            return card_request(session, key, CARD, EXPIRY, filled=FILLED, rrpid=rrpid)

        session = start_cardholder(ec_bank, CARD)
        same, state = request(session)
        first, second = _race(workers, [same, same])
        assert isinstance(first, bytes) and first == second
        answer = S.CertResponse(cert_res=first)
        assert open_card_cert_response(answer, state, session.trust).complete

        session = start_cardholder(ec_bank, CARD)
        one, _ = request(session)
        another, _ = request(session, rrpid=one.header.rrpid)
        outcomes = _race(workers, [one, another])
        answered = [o for o in outcomes if isinstance(o, bytes)]
        refused = [o for o in outcomes if isinstance(o, ProtocolError)]
        assert len(answered) == 1 and len(refused) == 1, outcomes
        assert refused[0].code == ErrorCode.ERROR_CODE_RRPID_REUSED
    finally:
        for store in stores:
            store.close()
