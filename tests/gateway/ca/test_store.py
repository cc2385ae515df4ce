"""ca.db: schema, durability, key uniqueness, replay refusal, live certificates, no PAN in it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.ca import store as ca_store
from gateway.ca.errors import CaError, CaUnavailable, SchemaMismatch, StoreError
from gateway.ca.records import IssuedCertificate
from gateway.ca.replay import SESSION_KINDS, replayed, request_digest
from gateway.ca.store import CaStore
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.roles import MERCHANT, MERCHANT_CA, PAYMENT_GATEWAY
from setcore.registration_merchant import MerchantIdentity

from .conftest import ALL_TEST_CARDS, CARD, EXPIRY, REVIEW_CARD, UNKNOWN_CARD, Bank
from .flows import register_cardholder, register_merchant


def test_new_store_is_wal_with_a_schema_version(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    store.close()
    db = sqlite3.connect(tmp_path / "ca.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    finally:
        db.close()
    CaStore.open(tmp_path / "ca.db").close()  # reopens without create


def test_other_schema_versions_are_refused(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    store.close()
    db = sqlite3.connect(tmp_path / "ca.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(SchemaMismatch):
        CaStore.open(tmp_path / "ca.db")


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "other.db")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(SchemaMismatch):
        CaStore.open(tmp_path / "other.db")
    with pytest.raises(StoreError):
        CaStore.open(tmp_path / "missing.db")


def test_a_ca_db_made_by_another_process_meanwhile_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process makes ca.db between this one's look and its create (the file's
    owner-only create is O_EXCL): the database it made is opened, its schema checked,
    rather than the create failing as if ca.db could not be used."""
    path = tmp_path / "ca.db"
    real_open = os.open
    raced: list[Path] = []

    def racing_open(file: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if not raced and Path(file) == path:
            raced.append(path)
            CaStore.open(path, create=True).close()  # the other process, done meanwhile
        return real_open(file, flags, mode)

    monkeypatch.setattr(os, "open", racing_open)  # the os module ca_store uses
    store = CaStore.open(path, create=True)
    monkeypatch.undo()
    try:
        with store.write() as tx:
            tx.claim_key(b"\x07" * 32, b"r" * 32, None, 0)
    finally:
        store.close()
    assert raced == [path]
    assert path.stat().st_mode & 0o777 == ca_store.DATABASE_MODE


def test_a_ca_db_gone_after_the_look_is_not_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``create`` SQLite never makes ca.db, even when it goes away between the
    look and the open: no empty database with the default mode is left behind."""
    path = tmp_path / "ca.db"
    CaStore.open(path, create=True).close()
    real_exists = Path.exists
    looked: list[Path] = []

    def exists_then_gone(self: Path, *args: object, **kwargs: object) -> bool:
        found = real_exists(self)
        if self == path and not looked:
            looked.append(path)
            path.unlink()  # another process removes it right after the first look
        return found

    monkeypatch.setattr(Path, "exists", exists_then_gone)
    with pytest.raises(StoreError, match="cannot open CA database") as refused:
        CaStore.open(path)
    monkeypatch.undo()
    assert looked == [path]
    assert not isinstance(refused.value, SchemaMismatch)
    assert not path.exists()


def _open_descriptors(path: Path) -> list[str]:
    """This process's file descriptors open on ``path`` (Linux: its fd directory)."""
    fds = Path("/proc/self/fd")
    target = path.resolve()
    found = []
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):  # the directory's own descriptor goes away
            if (fds / fd).resolve() == target:
                found.append(fd)
    return found


@pytest.mark.parametrize("create", [False, True])
def test_a_refused_database_is_closed_again(tmp_path: Path, create: bool) -> None:
    """SchemaMismatch leaves no connection behind (a bank that retries its start would
    pile them up), whether or not the store was asked to create its schema."""
    store = CaStore.open(tmp_path / "ca.db", create=True)
    store.close()
    db = sqlite3.connect(tmp_path / "ca.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(SchemaMismatch) as refused:
        CaStore.open(tmp_path / "ca.db", create=create)
    # Asked while the error (and what its traceback holds) is still alive.
    assert refused.value is not None
    assert _open_descriptors(tmp_path / "ca.db") == []


def test_a_key_is_claimed_once(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    key = b"\x07" * 32
    with store.write() as tx:
        tx.claim_key(key, b"r" * 32, None, 0)
    # A second claim is a bug of the caller (it asks ``key_claimed`` in the same
    # transaction), not an outage (``test_store_constraints``).
    with pytest.raises(CaError) as refused, store.write() as tx:
        tx.claim_key(key, b"s" * 32, None, 0)
    assert not isinstance(refused.value, CaUnavailable), repr(refused.value)
    with store.read() as tx:
        assert tx.key_claimed(key)
    store.close()


def test_a_live_certificate_is_unexpired_unrevoked_and_of_the_asked_type(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    issuer = b"\x0c" * 32

    def cert(n: int, subject: str, certificate_type: int, not_after_ms: int) -> IssuedCertificate:
        return IssuedCertificate(
            bytes([n]) * 32, n, issuer, certificate_type, "signature", subject, b"der",
            not_after_ms, 0,
        )  # fmt: skip

    shop = cert(1, "m-shop", MERCHANT, 1000)
    with store.write() as tx:
        tx.add_certificate(shop)
        # The same name on a gateway's and on a CA's own certificate: other types.
        tx.add_certificate(cert(2, "m-shop", PAYMENT_GATEWAY, 5000))
        tx.add_certificate(cert(3, "m-shop", MERCHANT_CA, 5000))
    with store.read() as tx:
        assert tx.holds_live_certificate("m-shop", MERCHANT, 999)
        assert tx.holds_live_certificate("m-shop", MERCHANT, 1000)  # notAfter is inclusive
        assert not tx.holds_live_certificate("m-shop", MERCHANT, 1001)
        assert tx.holds_live_certificate("m-shop", PAYMENT_GATEWAY, 1001)
        assert not tx.holds_live_certificate("m-other", MERCHANT, 999)
    with store.write() as tx:
        tx.revoke(shop, 500)
    with store.read() as tx:
        assert not tx.holds_live_certificate("m-shop", MERCHANT, 999)
        assert tx.holds_live_certificate("m-shop", PAYMENT_GATEWAY, 999)
    store.close()


def query_plan(path: Path, index: str, table: str, read: Callable[[Any], object]) -> str:
    """The plan of the query ``read`` makes of ``table`` in a ca.db made before ``index``
    (version 1 all the same), which gains it at open."""
    CaStore.open(path, create=True).close()
    db = sqlite3.connect(path)
    db.execute(f"DROP INDEX IF EXISTS {index}")
    db.commit()
    db.close()
    store = CaStore.open(path)
    statements: list[str] = []
    # Reads have a connection of their own (``gateway.ca.store``).
    store._reader.set_trace_callback(statements.append)
    with store.read() as tx:
        read(tx)
    store._reader.set_trace_callback(None)
    (query,) = [s for s in statements if f"FROM {table}" in s]
    plan = " ".join(row[3] for row in store._reader.execute(f"EXPLAIN QUERY PLAN {query}"))
    store.close()
    return plan


def test_the_live_certificate_check_reads_through_the_subject_index(tmp_path: Path) -> None:
    def read(tx: Any) -> None:
        assert not tx.holds_live_certificate("m-shop", MERCHANT, 0)

    plan = query_plan(tmp_path / "ca.db", "certificates_by_subject", "certificates", read)
    assert "USING INDEX certificates_by_subject" in plan, plan
    assert "SCAN c" not in plan, plan


def test_an_rrpid_answers_one_request(tmp_path: Path) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    rrpid = b"\x01" * 32
    digest = request_digest("cert", b"request")
    with store.write() as tx:
        tx.put_response(rrpid, "cert", digest, b"answer", 0)
    with store.read() as tx:
        assert replayed(tx, rrpid, "cert", digest) == b"answer"
        assert replayed(tx, b"\x02" * 32, "cert", digest) is None
        for kind, other in (("cert", request_digest("cert", b"other")), ("cert-inq", digest)):
            with pytest.raises(ProtocolError) as caught:
                replayed(tx, rrpid, kind, other)
            assert caught.value.code == ErrorCode.ERROR_CODE_RRPID_REUSED
    store.close()


def test_a_sweep_reads_the_stored_answers_once(tmp_path: Path) -> None:
    # A DELETE per session kind read the whole table (no index on it) three more times in
    # the sweep's write transaction: one statement reads it once.
    store = CaStore.open(tmp_path / "ca.db", create=True)
    digest = request_digest("cert", b"request")
    answers = {1: ("cert", 10), 2: ("cert", 500), 3: ("card-c-init", 150), 4: ("reg-form", 300)}
    with store.write() as tx:
        for n, (kind, made_ms) in answers.items():
            tx.put_response(bytes([n]) * 32, kind, digest, b"answer", made_ms)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    with store.write() as tx:
        tx.purge(0, 100, session_kinds=SESSION_KINDS, session_answers_before_ms=200)
    store._db.set_trace_callback(None)
    kept = {row[0][0] for row in store._db.execute("SELECT rrpid FROM responses")}
    store.close()
    assert len([s for s in statements if "FROM responses" in s]) == 1, statements
    # Gone: an answer past the retention, a session's answer past a session's life.
    assert kept == {2, 4}


# Writes its arguments' bytes, one file after another, to its standard output.
_CAT = """\
import sys
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        sys.stdout.buffer.write(f.read())
"""
# Reads ca.db (argv[1]), as ``setpay ca list`` does, and closes it.
_READER = """\
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("SELECT count(*) FROM certified_keys").fetchone()
db.close()
"""
# Bounds a child that reads a few files.
_CHILD_TIMEOUT_S = 60


def _read_elsewhere(files: Sequence[Path]) -> bytes:
    """The bytes of ``files`` (ca.db and its -wal and -shm), read by another process.

    Not by this one while it has ca.db open (the session's banks): closing any descriptor
    of a process on a file drops every POSIX lock the process holds on that file, its
    SQLite connections' among them. The next process to close ca.db (``setpay ca revoke``
    in test_revocation) then took itself for its last user, checkpointed, and deleted the
    -wal and -shm the bank still used; the bank's next connection opened a new, empty -wal
    where the index it shares with the others points at the old one's frames, and failed
    with SQLite's "disk I/O error" (SQLITE_IOERR_SHORT_READ)."""
    done = subprocess.run(
        [sys.executable, "-c", _CAT, *map(str, files)],
        capture_output=True, check=True, timeout=_CHILD_TIMEOUT_S,
    )  # fmt: skip
    return done.stdout


def test_reading_ca_db_elsewhere_leaves_its_open_connections_their_locks(tmp_path: Path) -> None:
    """ca.db open here, its files read by ``_read_elsewhere``: a process that then reads it
    and closes it sees it in use, and deletes neither its -wal nor its -shm; this process's
    connections, the store's and a new one, go on writing and reading as before."""
    path = tmp_path / "ca.db"
    store = CaStore.open(path, create=True)
    try:
        with store.write() as tx:
            tx.claim_key(b"\x01" * 32, b"r" * 32, None, 0)
        files = sorted(tmp_path.iterdir())
        assert [p.name for p in files] == ["ca.db", "ca.db-shm", "ca.db-wal"]
        assert _read_elsewhere(files) != b""
        subprocess.run(
            [sys.executable, "-c", _READER, str(path)], check=True, timeout=_CHILD_TIMEOUT_S
        )
        assert sorted(tmp_path.iterdir()) == files
        with store.write() as tx:
            tx.claim_key(b"\x02" * 32, b"r" * 32, None, 0)
        again = CaStore.open(path)
        try:
            with again.read() as tx:
                assert tx.key_claimed(b"\x01" * 32) and tx.key_claimed(b"\x02" * 32)
        finally:
            again.close()
    finally:
        store.close()


def test_no_pan_in_ca_db(ec_bank: Bank) -> None:
    for pan in (CARD, REVIEW_CARD, UNKNOWN_CARD):
        register_cardholder(ec_bank, pan, EXPIRY)
    register_merchant(ec_bank, MerchantIdentity("m-scan", "Scan Ltd"), account=CARD)
    files = [p for p in ec_bank.directory.iterdir() if p.name.startswith("ca.db")]
    assert files, "ca.db not found"
    data = _read_elsewhere(files)  # the bank has it open
    assert len(data) > 0
    for pan in ALL_TEST_CARDS:
        assert pan.encode() not in data, f"a PAN ({pan[:6]}...) was written to ca.db"
    # The scan itself can fail: the card's expiry month is recorded on purpose.
    assert EXPIRY.encode() in data
