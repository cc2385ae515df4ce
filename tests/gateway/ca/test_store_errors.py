"""ca.db's errors by SQLite's result code: an outage is UNAVAILABLE, a bug is answered as one.

Every sqlite3 error but a constraint used to be ``StoreError``, which the servicer
answers UNAVAILABLE ("send it again"), bugs among them: a statement naming a column or a
table that is not there, parameters of the wrong number or type, a transaction begun
inside another. The requester resent the same bytes into the same bug. Now only the
result codes of a database that cannot be used now (busy, I/O, full, cannot open,
corrupt) are outages; the rest is ``StoreBug``. Each case here is made in the real
SQLite store, and, through the real gRPC server, on a scratch ca.db with a table dropped.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from gateway.ca import CaStore, CertificateAuthority
from gateway.ca import errors as ca_errors
from gateway.ca import servicer as ca_servicer
from gateway.ca import store as ca_store
from gateway.ca.errors import CaUnavailable, StoreBug, StoreError
from gateway.ca.records import Session
from gateway.ca.store import StoreTransaction
from setcore.errors import ErrorCode, PeerError
from setcore.registration import ca_error
from setcore.registration_cardholder import build_card_c_init_request
from setpay.v1 import error_pb2, registration_pb2

from .conftest import Bank, serving
from .flows import new_trust, sent_digest
from .revocation_support import (
    SHORT_BUSY_TIMEOUT_MS,
    authority_keys,
    bank_trust,
    locked,
    new_ca_db,
)

S = registration_pb2

Statement = Callable[[StoreTransaction], object]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CaStore]:
    """A fresh ca.db whose busy timeout runs out at once."""
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)
    opened = CaStore.open(tmp_path / "ca.db", create=True)
    yield opened
    opened.close()


def _session(lid_ca: bytes) -> Session:
    return Session(lid_ca, b"lid-ee", 1, 0, None, False, "", "", 0, 1)


def test_a_busy_database_is_an_outage(store: CaStore) -> None:
    """Another connection holds the write lock past the busy timeout (as ``setpay ca
    revoke`` may): UNAVAILABLE, and the write goes through once the lock is free."""
    with locked(store), pytest.raises(StoreError) as busy, store.write() as tx:
        tx.put_session(_session(b"L" * 16))
    assert isinstance(busy.value.__cause__, sqlite3.OperationalError)
    assert busy.value.__cause__.sqlite_errorname == "SQLITE_BUSY"
    assert "SQLITE_BUSY" in str(busy.value)
    with store.write() as tx:
        tx.put_session(_session(b"L" * 16))


def _missing_column(tx: StoreTransaction) -> object:
    return tx._db.execute("SELECT no_such_column FROM sessions").fetchall()


def _missing_table(tx: StoreTransaction) -> object:
    return tx._db.execute("SELECT * FROM no_such_table").fetchall()


def _too_few_parameters(tx: StoreTransaction) -> object:
    return tx._db.execute("SELECT * FROM sessions WHERE lid_ca = ?", ()).fetchall()


def _parameter_of_no_sql_type(tx: StoreTransaction) -> object:
    return tx._db.execute("SELECT * FROM sessions WHERE lid_ca = ?", (object(),)).fetchall()


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        (_missing_column, "no such column: no_such_column"),
        (_missing_table, "no such table: no_such_table"),
        (_too_few_parameters, "Incorrect number of bindings"),
        (_parameter_of_no_sql_type, "type 'object' is not supported"),
    ],
)
def test_a_statement_sqlite_refuses_is_a_bug(
    store: CaStore, statement: Statement, words: str
) -> None:
    """The statement is wrong, every time: never an outage to retry. Its transaction
    is rolled back (the write made before it is gone) and the store goes on."""
    with pytest.raises(StoreBug) as refused, store.write() as tx:
        tx.put_session(_session(b"A" * 16))
        statement(tx)
    assert not isinstance(refused.value, CaUnavailable), repr(refused.value)
    assert words in str(refused.value)
    with store.write() as tx:
        assert tx.session(b"A" * 16) is None
        tx.put_session(_session(b"A" * 16))


def test_a_transaction_begun_inside_another_is_a_bug(store: CaStore) -> None:
    """The store's lock lets its own thread in again; SQLite does not: a nested BEGIN
    is a bug of the caller. The outer transaction is rolled back with it."""
    with pytest.raises(StoreBug) as refused, store.write() as tx:
        tx.put_session(_session(b"N" * 16))
        with store.read():
            pass  # pragma: no cover - BEGIN is refused
    assert "cannot start a transaction within a transaction" in str(refused.value)
    with store.read() as tx:
        assert tx.session(b"N" * 16) is None


def test_a_constraint_is_still_a_constraint_violation(store: CaStore) -> None:
    with store.write() as tx:
        tx.put_session(_session(b"C" * 16))
    with pytest.raises(ca_errors.ConstraintViolation) as refused, store.write() as tx:
        tx.put_session(_session(b"C" * 16))
    assert isinstance(refused.value, StoreBug)
    assert "sessions.lid_ca" in str(refused.value)


def test_a_closed_store_is_an_outage(tmp_path: Path) -> None:
    """A request still running while the bank shuts down: UNAVAILABLE, to be sent again."""
    store = CaStore.open(tmp_path / "ca.db", create=True)
    store.close()
    with pytest.raises(StoreError, match="closed"), store.read():
        pass  # pragma: no cover - never entered


# -- through the servicer -------------------------------------------------------------


@pytest.fixture
def scratch(
    ec_bank: Bank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CertificateAuthority]:
    """A CA of the EC bank's keys on a scratch ca.db (busy timeout short), swept once."""
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)
    store = new_ca_db(tmp_path / "ca.db", ec_bank.pki)
    try:
        keys = authority_keys(ec_bank.pki, ec_bank.pki.backend)
        ca = CertificateAuthority(keys, store, bank_trust(ec_bank.pki), ec_bank.issuer)
        ca.certificates([])  # the first call sweeps ca.db: done before the damage
        yield ca
    finally:
        store.close()


def _drop(path: Path, table: str) -> None:
    """Drop a table of the scratch ca.db from another connection, as a bad migration would."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute(f"DROP TABLE {table}")
    finally:
        db.close()


def _signed_error(bank: Bank, error: error_pb2.SetError, request: Message) -> PeerError:
    """The Cardholder CA's signed Error, verified as the wallet that sent ``request`` does."""
    rrpid = request.rrpid  # type: ignore[attr-defined]
    opened = ca_error(
        error,
        new_trust(bank),
        S.CERTIFICATE_TYPE_CARDHOLDER_CA,
        rrpid,
        request=sent_digest(request),
    )
    assert isinstance(opened, PeerError), repr(opened)
    return opened


def test_a_signed_call_meeting_a_dropped_table_is_answered_as_a_bug(
    ec_bank: Bank, tmp_path: Path, scratch: CertificateAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """CardCInit writes a session into a table that is gone: a signed UNSPECIFIED_FAILURE
    Error, the traceback in the log; not UNAVAILABLE, which has the wallet resend it."""
    _drop(tmp_path / "ca.db", "sessions")
    request, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee-dropped")
    with serving(scratch) as stub, caplog.at_level(logging.ERROR, logger=ca_servicer.__name__):
        try:
            response = stub.CardCInit(request)
        except grpc.RpcError as exc:
            pytest.fail(f"answered {exc.code()} ({exc.details()}), not as a bug")  # type: ignore[attr-defined]
    assert response.WhichOneof("result") == "error"
    error = _signed_error(ec_bank, response.error, request)
    assert error.code == ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE
    # The servicer's alone: the server's health says NOT_SERVING as it stops.
    (record,) = [r for r in caplog.records if r.name == ca_servicer.__name__]
    assert record.exc_info is not None and isinstance(record.exc_info[1], StoreBug)
    assert "no such table: sessions" in caplog.text


def test_an_unsigned_read_meeting_a_dropped_table_is_internal(
    tmp_path: Path, scratch: CertificateAuthority
) -> None:
    _drop(tmp_path / "ca.db", "certificates")
    with serving(scratch) as stub, pytest.raises(grpc.RpcError) as failed:
        stub.GetCertificates(S.GetCertificatesRequest(thumbs=[b"\x5a" * 32]))
    assert failed.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority internal error"  # type: ignore[attr-defined]


def test_a_call_meeting_a_busy_database_stays_unavailable(
    ec_bank: Bank, scratch: CertificateAuthority
) -> None:
    request, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee-busy")
    store = scratch._store
    with serving(scratch) as stub, locked(store), pytest.raises(grpc.RpcError) as failed:
        stub.CardCInit(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority database unavailable"  # type: ignore[attr-defined]
