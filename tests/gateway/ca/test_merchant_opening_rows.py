"""How long a ``merchant_openings`` row lasts, and how it is found.

A row lets the very bytes it names skip the judgement of their RequestDate while their
session lasts, so that an initial request whose account was opened can be resent after
its answer was lost. A refusal is not stored (``gateway.ca.replay``), so a row left
behind by a refused request let anyone holding its bytes replay them for the session's
hour and be certified once what refused them had changed; the decision that refuses the
request a row names now deletes the row. A row lives to its session's last millisecond,
as the session does (``cardholder.session_valid``), and is found by RRPID through an
index, not by reading every live row, on every merchant or gateway CertReq.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca.store import CaStore
from hsm.base import KeyHandle, KeyUsage
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import FRESHNESS_WINDOW_MS, now_ms
from setcore.registration_merchant import open_merchant_cert_response
from setpay.v1 import registration_pb2

from .conftest import Bank, DictIssuer, serving
from .flows import (
    MerchantSession,
    certificates_naming,
    merchant_request,
    new_key,
    register_merchant,
    start_merchant,
)
from .test_merchant import _merchant
from .test_store import query_plan

S = registration_pb2
MINUTE_MS = 60 * 1000


class Clock:
    """The CA's clock: the real one moved on by ``offset``, or held at ``held``."""

    def __init__(self) -> None:
        self.offset = 0
        self.held: int | None = None

    def __call__(self) -> int:
        return self.held if self.held is not None else now_ms() + self.offset


def _ca_over(stack: ExitStack, bank: Bank, issuer: DictIssuer, clock: Clock) -> Bank:
    """A worker of its own over ``bank``'s keys and ca.db, asking ``issuer``, reading
    ``clock``, served on port 0."""
    store = open_ca_store(bank.config)
    stack.callback(store.close)
    ca = CertificateAuthority(bank.pki.authority_keys(), store, bank.pki.trust, issuer, clock=clock)
    return replace(bank, ca=ca, issuer=issuer, stub=stack.enter_context(serving(ca)))


def _openings(bank: Bank, merchant_id: str) -> list[bytes]:
    """The RRPIDs ca.db's ``merchant_openings`` names for ``merchant_id``."""
    path = bank.config.path(bank.config.ca_db)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT rrpid FROM merchant_openings WHERE merchant_id = ?", (merchant_id,)
        ).fetchall()
    finally:
        db.close()
    return [bytes(row[0]) for row in rows]


def _session_expires_ms(bank: Bank, session: MerchantSession) -> int:
    path = bank.config.path(bank.config.ca_db)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (expires,) = db.execute(
            "SELECT expires_ms FROM sessions WHERE lid_ca = ?", (session.registration.ca.lid_ca,)
        ).fetchone()
    finally:
        db.close()
    return int(expires)


def _keys(bank: Bank) -> tuple[KeyHandle, KeyHandle]:
    return new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)


# --- a refused request's row ------------------------------------------------------------


def test_a_refused_recorded_request_replayed_50_minutes_later_is_too_old(
    ec_bank: Bank,
) -> None:
    """R1 names the ID's account while the ID still holds live certificates: recorded (the
    acquirer would let it in), then refused REJECTED_BY_AGENT. The operator revokes the
    old certificates; R1's bytes replayed 50 minutes on were certified, by the row their
    refusal left, for keys of a request its merchant had discarded on the refusal."""
    with ExitStack() as stack:
        clock, issuer = Clock(), DictIssuer({})
        bank = _ca_over(stack, ec_bank, issuer, clock)
        identity = _merchant("replay")
        first, *_ = register_merchant(bank, identity)
        assert first.signature is not None and first.key_exchange is not None
        account = issuer.accounts[identity.merchant_id]
        session = start_merchant(bank, identity)
        sig, kex = _keys(bank)
        filled = [(n, "Corner Shop Ltd") for n in session.registration.form.fields]
        r1, st1 = merchant_request(session, sig, kex, filled=filled, account=account)
        outcome = open_merchant_cert_response(bank.stub.Cert(r1), st1, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
        bank.ca.revoke(thumb=first.signature.thumbprint)
        bank.ca.revoke(thumb=first.key_exchange.thumbprint)
        clock.offset = 50 * MINUTE_MS
        # The CA itself: certificates it would issue now are valid from 50 minutes on,
        # which the real clock could not check; its Error goes back over gRPC as a SET Error.
        with pytest.raises(ProtocolError) as caught:
            bank.ca.cert(r1)
        assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        assert len(certificates_naming(bank, identity.merchant_id)) == 2  # the first two
        assert _openings(bank, identity.merchant_id) == []


def test_a_request_refused_for_another_brand_leaves_no_row(ec_bank: Bank) -> None:
    """Recorded (a live session, its Chall-CA and identity), then refused for its brand:
    nothing of it stays in ca.db."""
    with ExitStack() as stack:
        clock, issuer = Clock(), DictIssuer({})
        bank = _ca_over(stack, ec_bank, issuer, clock)
        identity = _merchant("other-brand")
        session = start_merchant(bank, identity)
        sig, kex = _keys(bank)
        filled = [(n, "x") for n in session.registration.form.fields]
        request, state = merchant_request(session, sig, kex, filled=filled, brand_id="nobrand")
        outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
        assert _openings(bank, identity.merchant_id) == []
        assert issuer.accounts == {}


def test_a_refused_resend_within_its_window_is_decided_again(ec_bank: Bank) -> None:
    """The row gone, the refused bytes are judged as any arrival: within the freshness
    window they are decided again (the same refusal), not refused for their date."""
    with ExitStack() as stack:
        clock, issuer = Clock(), DictIssuer({})
        bank = _ca_over(stack, ec_bank, issuer, clock)
        identity = _merchant("again")
        register_merchant(bank, identity)
        session = start_merchant(bank, identity)
        sig, kex = _keys(bank)
        filled = [(n, "Corner Shop Ltd") for n in session.registration.form.fields]
        account = issuer.accounts[identity.merchant_id]
        request, state = merchant_request(session, sig, kex, filled=filled, account=account)
        for offset in (0, FRESHNESS_WINDOW_MS // 2):
            clock.offset = offset
            outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
            assert outcome.status == S.CERT_STATUS_CODE_REJECTED_BY_AGENT
        assert _openings(bank, identity.merchant_id) == []


# --- a row's last millisecond ------------------------------------------------------------


def test_a_lone_registration_at_its_sessions_last_millisecond_is_certified(
    ec_bank: Bank,
) -> None:
    """Decided at now == the session's expires_ms, which ``session_valid`` accepts: the row
    just written was read as gone, and the request refused as if another were under way."""
    with ExitStack() as stack:
        clock, issuer = Clock(), DictIssuer({})
        bank = _ca_over(stack, ec_bank, issuer, clock)
        identity = _merchant("edge")
        session = start_merchant(bank, identity)
        expires = _session_expires_ms(bank, session)
        sig, kex = _keys(bank)
        filled = [(n, "Corner Shop Ltd") for n in session.registration.form.fields]
        request, _ = merchant_request(session, sig, kex, filled=filled, request_date=expires)
        clock.held = expires
        # The CA itself: its certificates are valid from an hour on, which the real clock
        # cannot check yet.
        bank.ca.cert(request)
        assert len(certificates_naming(bank, identity.merchant_id)) == 2
        assert issuer.merchants == [identity.subject]


def _store_with_a_row(path: Path, expires: int) -> CaStore:
    store = CaStore.open(path, create=True)
    with store.write() as tx:
        tx.put_merchant_opening("m-edge", b"\x01" * 32, b"\x02" * 32, expires)
    return store


def test_a_row_is_read_to_its_last_millisecond_and_dropped_after(tmp_path: Path) -> None:
    expires = 1_000_000
    store = _store_with_a_row(tmp_path / "ca.db", expires)
    try:
        with store.write() as tx:
            tx.drop_expired_merchant_openings(expires)
            assert tx.merchant_opening("m-edge", expires) == (b"\x01" * 32, b"\x02" * 32)
            assert tx.opening_recorded(b"\x01" * 32, b"\x02" * 32, expires)
        with store.write() as tx:
            assert tx.merchant_opening("m-edge", expires + 1) is None
            assert not tx.opening_recorded(b"\x01" * 32, b"\x02" * 32, expires + 1)
            tx.drop_expired_merchant_openings(expires + 1)
        rows = store._db.execute("SELECT count(*) FROM merchant_openings").fetchone()
        assert rows == (0,)
    finally:
        store.close()


def test_a_row_of_other_bytes_is_not_these(tmp_path: Path) -> None:
    """Negative: the RRPID alone, or the digest alone, is not the recorded request."""
    store = _store_with_a_row(tmp_path / "ca.db", 1_000_000)
    try:
        with store.read() as tx:
            assert not tx.opening_recorded(b"\x01" * 32, b"\x03" * 32, 0)
            assert not tx.opening_recorded(b"\x04" * 32, b"\x02" * 32, 0)
    finally:
        store.close()


# --- the row found by RRPID ----------------------------------------------------------------


def test_a_recorded_opening_is_looked_up_by_its_rrpid_index(tmp_path: Path) -> None:
    def read(tx: Any) -> None:
        assert not tx.opening_recorded(b"\x01" * 32, b"\x02" * 32, 0)

    plan = query_plan(tmp_path / "ca.db", "merchant_openings_by_rrpid", "merchant_openings", read)
    assert "USING INDEX merchant_openings_by_rrpid" in plan, plan
    assert "SCAN" not in plan, plan
