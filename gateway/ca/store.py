"""``ca.db``: the certificate authority's SQLite store.

Tables (schema version 1):

    sessions        one per CardCInit / Me-AqCInit: LID-CA, LID-EE, which CA, the Chall-CA
                    issued and whether it was used, the identity a merchant gave
    responses       every answer, keyed by RRPID, with a digest of the request: a retry
                    gets the same bytes; another request under the same RRPID is refused.
                    Not a CertReq's refusal before the CA decides (it cannot be opened, its
                    signatures fail, a key is off the allow-list): it changes nothing and
                    is answered afresh
    requests        certificate requests the CA decided (pended, complete, rejected),
                    keyed by RRPID and found by (LID-EE, LID-CA) for CertInq
    certificates    every SET certificate of the brand (DER), by thumbprint and serial
    certified_keys  every public key a request ever claimed; unique, so a key is never
                    certified twice (SET-PROTOCOL.md 4.3 rule 4)
    revocations     revoked certificates
    crls            every CRL issued, by CA and cRLNumber
    bcis            every BrandCRLIdentifier, by sequence number, with the CRLs it lists

No PAN is ever written here: a cardholder request keeps the blinded account, the card's
expiry month, Nonce-CCA and the wallet's back key (so that a CertInq can be answered),
never the card number or CardSecret.

WAL with synchronous=FULL: a certificate is reported issued only after the commit that
records it (and the key it certifies) is on disk. One connection per store object,
serialized by a lock; other processes (``setpay ca revoke``) coordinate through SQLite's
locking: writers take BEGIN IMMEDIATE, everyone waits up to a busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

from gateway.ca.errors import SchemaMismatch, StoreError
from gateway.ca.records import (
    BciRecord,
    CrlRecord,
    IssuedCertificate,
    RequestRecord,
    Session,
    StoredResponse,
)
from gateway.ca.schema import INDEXES, SCHEMA, SCHEMA_VERSION
from gateway.cpu_turn import holding

# How long a statement waits for another process's transaction: issuance and revocation
# hold the lock for a few signatures; five seconds covers a slow disk without hanging.
BUSY_TIMEOUT_MS = 5000
# ca.db and its -wal / -shm files: readable and writable by the bank's user only.
DATABASE_MODE = 0o600
# Thumbprints are SHA-256 (32 bytes); certificate thumbs of a request are stored joined.
THUMB_BYTES = 32
# GetCertificates and similar lookups take at most this many thumbprints per query
# (SQLite's default limit on host parameters is far above; this bounds one answer).
MAX_LOOKUP = 64

_SELECT_CERTIFICATES = (
    "SELECT thumb, serial, issuer_thumb, certificate_type, usage, subject, der, "
    "not_after_ms, issued_ms FROM certificates WHERE "
)


def _join(thumbs: Sequence[bytes]) -> bytes:
    if any(len(t) != THUMB_BYTES for t in thumbs):
        raise ValueError("thumbprints are 32 bytes")
    return b"".join(thumbs)


def _split(joined: bytes) -> tuple[bytes, ...]:
    return tuple(joined[i : i + THUMB_BYTES] for i in range(0, len(joined), THUMB_BYTES))


class StoreTransaction:
    """The queries of one transaction (obtained from ``CaStore.read`` / ``CaStore.write``)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    # -- sessions -------------------------------------------------------------------

    def put_session(self, s: Session) -> None:
        """Record a new registration session."""
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.lid_ca, s.lid_ee, s.ca_type, s.request_type, s.chall_ca, int(s.chall_used),
             s.subject_id, s.subject_name, s.created_ms, s.expires_ms),
        )  # fmt: skip

    def session(self, lid_ca: bytes) -> Session | None:
        """The session with this LID-CA."""
        row = self._db.execute("SELECT * FROM sessions WHERE lid_ca = ?", (lid_ca,)).fetchone()
        if row is None:
            return None
        return Session(
            row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], row[8], row[9]
        )

    def set_challenge(self, lid_ca: bytes, chall_ca: bytes, request_type: int) -> None:
        """Issue the session's Chall-CA; one already issued (used or not) is never replaced.

        A RegFormReq anyone can send must not spoil the CertReq the wallet is about to make
        nor re-open a decided registration (``cardholder.reg_form_challenge``).
        """
        self._db.execute(
            "UPDATE sessions SET chall_ca = ?, request_type = ? "
            "WHERE lid_ca = ? AND chall_ca IS NULL",
            (chall_ca, request_type, lid_ca),
        )

    def use_challenge(self, lid_ca: bytes) -> None:
        """Mark the session's Chall-CA used: it answers one decided request only."""
        self._db.execute("UPDATE sessions SET chall_used = 1 WHERE lid_ca = ?", (lid_ca,))

    # -- responses ------------------------------------------------------------------

    def response(self, rrpid: bytes) -> StoredResponse | None:
        """The answer already given under ``rrpid``."""
        row = self._db.execute(
            "SELECT kind, request_digest, response FROM responses WHERE rrpid = ?", (rrpid,)
        ).fetchone()
        return None if row is None else StoredResponse(row[0], row[1], row[2])

    def put_response(
        self, rrpid: bytes, kind: str, request_digest: bytes, response: bytes, now_ms: int
    ) -> None:
        """Keep an answer so that a retry gets the same bytes."""
        self._db.execute(
            "INSERT INTO responses VALUES (?, ?, ?, ?, ?)",
            (rrpid, kind, request_digest, response, now_ms),
        )

    # -- requests -------------------------------------------------------------------

    def request_decided(self, rrpid: bytes) -> bool:
        """True when a certificate request was decided under ``rrpid`` (kept for good)."""
        row = self._db.execute("SELECT 1 FROM requests WHERE rrpid = ?", (rrpid,)).fetchone()
        return row is not None

    def put_request(self, r: RequestRecord, now_ms: int) -> None:
        """Record a decided certificate request."""
        self._db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.rrpid, r.lid_ee, r.lid_ca, r.ca_type, r.request_type, r.status, r.sig_spki,
             r.enc_spki, r.kem, r.blinded_account, r.card_expiry, r.nonce_cca, r.back_key,
             r.subject_id, r.subject_name, _join(r.cert_thumbs), now_ms, now_ms),
        )  # fmt: skip

    def update_request(
        self, rrpid: bytes, status: int, cert_thumbs: Sequence[bytes], now_ms: int
    ) -> None:
        """Record the final decision on a pended request."""
        self._db.execute(
            "UPDATE requests SET status = ?, cert_thumbs = ?, updated_ms = ? WHERE rrpid = ?",
            (status, _join(cert_thumbs), now_ms, rrpid),
        )

    def latest_request(self, lid_ee: bytes, lid_ca: bytes) -> RequestRecord | None:
        """The newest decided request of a registration (what CertInq asks about)."""
        row = self._db.execute(
            "SELECT * FROM requests WHERE lid_ee = ? AND lid_ca = ? "
            "ORDER BY created_ms DESC, rowid DESC LIMIT 1",
            (lid_ee, lid_ca),
        ).fetchone()
        if row is None:
            return None
        return RequestRecord(
            rrpid=row[0], lid_ee=row[1], lid_ca=row[2], ca_type=row[3], request_type=row[4],
            status=row[5], sig_spki=row[6], enc_spki=row[7], kem=row[8],
            blinded_account=row[9], card_expiry=row[10], nonce_cca=row[11], back_key=row[12],
            subject_id=row[13], subject_name=row[14], cert_thumbs=_split(row[15]),
        )  # fmt: skip

    # -- keys -----------------------------------------------------------------------

    def key_claimed(self, key_thumb: bytes) -> bool:
        """True when a request already claimed (or got certified) this public key."""
        row = self._db.execute(
            "SELECT 1 FROM certified_keys WHERE key_thumb = ?", (key_thumb,)
        ).fetchone()
        return row is not None

    def claim_key(
        self, key_thumb: bytes, rrpid: bytes | None, cert_thumb: bytes | None, now_ms: int
    ) -> None:
        """Record that this key is taken; the primary key makes a second claim fail."""
        self._db.execute(
            "INSERT INTO certified_keys VALUES (?, ?, ?, ?)",
            (key_thumb, rrpid, cert_thumb, now_ms),
        )

    def certify_key(self, key_thumb: bytes, cert_thumb: bytes) -> None:
        """Attach the certificate to a claimed key (a pended request got issued)."""
        self._db.execute(
            "UPDATE certified_keys SET cert_thumb = ? WHERE key_thumb = ?",
            (cert_thumb, key_thumb),
        )

    # -- certificates ---------------------------------------------------------------

    def add_certificate(self, c: IssuedCertificate) -> None:
        """Record a certificate of the brand."""
        self._db.execute(
            "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.thumb, format(c.serial, "x"), c.issuer_thumb, c.certificate_type, c.usage,
             c.subject, c.der, c.not_after_ms, c.issued_ms),
        )  # fmt: skip

    def _certificates(self, where: str, args: Sequence[object]) -> list[IssuedCertificate]:
        # ``where`` is one of this class's fixed clauses; values always go in as parameters.
        query = _SELECT_CERTIFICATES + where
        rows = self._db.execute(query, tuple(args)).fetchall()
        return [_issued(r) for r in rows]

    def certificate(self, thumb: bytes) -> IssuedCertificate | None:
        """The certificate with this thumbprint."""
        found = self._certificates("thumb = ?", (thumb,))
        return found[0] if found else None

    def certificates_by_serial(self, serial: int) -> list[IssuedCertificate]:
        """Certificates with this serial number (one, unless two CAs drew the same)."""
        return self._certificates("serial = ?", (format(serial, "x"),))

    def certificate_ders(self, thumbs: Sequence[bytes]) -> list[bytes]:
        """DER of the certificates among ``thumbs`` (unknown ones are left out)."""
        wanted = list(dict.fromkeys(thumbs))[:MAX_LOOKUP]
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        by_thumb = {c.thumb: c.der for c in self._certificates(f"thumb IN ({marks})", wanted)}
        return [by_thumb[t] for t in wanted if t in by_thumb]

    def holds_live_certificate(self, subject: str, certificate_type: int, now_ms: int) -> bool:
        """True when a certificate of this type, unexpired and unrevoked, names ``subject``."""
        # Answered from the index on (subject, certificate_type) (schema.INDEXES).
        row = self._db.execute(
            "SELECT 1 FROM certificates AS c WHERE c.subject = ? AND c.certificate_type = ? "
            "AND c.not_after_ms >= ? "
            "AND NOT EXISTS (SELECT 1 FROM revocations AS r WHERE r.cert_thumb = c.thumb) "
            "LIMIT 1",
            (subject, certificate_type, now_ms),
        ).fetchone()
        return row is not None

    def listed_certificates(
        self, *, subject: str | None = None, live_at_ms: int | None = None
    ) -> Iterator[tuple[IssuedCertificate, int | None]]:
        """Certificates with their revocation time (None: not revoked), oldest first.

        Only those naming exactly ``subject`` when it is given; only the unexpired and
        unrevoked at ``live_at_ms`` when it is given. Rows are read as they are consumed
        (a bank holds a certificate per cardholder): consume them inside the transaction.
        """
        # With a subject, read through the index on it; without, every row (an operator's
        # occasional listing). A read-only open cannot add the index to a database made
        # before it: such a listing scans, as it always did.
        rows = self._db.execute(
            "SELECT c.thumb, c.serial, c.issuer_thumb, c.certificate_type, c.usage, c.subject, "
            "c.der, c.not_after_ms, c.issued_ms, r.revoked_ms FROM certificates AS c "
            "LEFT JOIN revocations AS r ON r.cert_thumb = c.thumb "
            "WHERE (:subject IS NULL OR c.subject = :subject) "
            "AND (:now IS NULL OR (c.not_after_ms >= :now AND r.cert_thumb IS NULL)) "
            "ORDER BY c.issued_ms, c.rowid",
            {"subject": subject, "now": live_at_ms},
        )
        for r in rows:
            yield _issued(r), r[9]

    # -- revocation -----------------------------------------------------------------

    def revoke(self, cert: IssuedCertificate, now_ms: int) -> None:
        """Record a revocation."""
        self._db.execute(
            "INSERT INTO revocations VALUES (?, ?, ?, ?)",
            (cert.thumb, cert.issuer_thumb, format(cert.serial, "x"), now_ms),
        )

    def is_revoked(self, thumb: bytes) -> bool:
        """True when the certificate was revoked."""
        row = self._db.execute(
            "SELECT 1 FROM revocations WHERE cert_thumb = ?", (thumb,)
        ).fetchone()
        return row is not None

    def revoked_by(self, issuer_thumb: bytes) -> list[tuple[int, int]]:
        """(serial, revoked at ms) of every certificate of one CA that was revoked."""
        rows = self._db.execute(
            "SELECT serial, revoked_ms FROM revocations WHERE issuer_thumb = ? ORDER BY rowid",
            (issuer_thumb,),
        ).fetchall()
        return [(int(serial, 16), revoked_ms) for serial, revoked_ms in rows]

    def add_crl(self, crl: CrlRecord) -> None:
        """Record a newly issued CRL."""
        self._db.execute(
            "INSERT INTO crls VALUES (?, ?, ?, ?, ?, ?)",
            (crl.issuer_thumb, crl.crl_number, crl.thumb, crl.der, crl.next_update_ms,
             crl.issued_ms),
        )  # fmt: skip

    def latest_crl(self, issuer_thumb: bytes) -> CrlRecord | None:
        """The CA's CRL with the highest number."""
        row = self._db.execute(
            "SELECT * FROM crls WHERE issuer_thumb = ? ORDER BY crl_number DESC LIMIT 1",
            (issuer_thumb,),
        ).fetchone()
        return None if row is None else CrlRecord(*row)

    def crl_ders(self, thumbs: Sequence[bytes]) -> list[bytes]:
        """DER of the CRLs with these thumbprints, in that order."""
        wanted = list(thumbs)[:MAX_LOOKUP]
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT thumb, der FROM crls WHERE thumb IN ({marks})",  # noqa: S608 - fixed text
            wanted,
        ).fetchall()
        by_thumb = dict(rows)
        return [by_thumb[t] for t in wanted if t in by_thumb]

    def add_bci(self, bci: BciRecord) -> None:
        """Record a newly issued BrandCRLIdentifier."""
        self._db.execute(
            "INSERT INTO bcis VALUES (?, ?, ?, ?, ?)",
            (bci.sequence_num, bci.der, _join(bci.crl_thumbs), bci.not_after_ms, bci.issued_ms),
        )

    def latest_bci(self) -> BciRecord | None:
        """The BrandCRLIdentifier with the highest sequence number."""
        row = self._db.execute("SELECT * FROM bcis ORDER BY sequence_num DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return BciRecord(row[0], row[1], _split(row[2]), row[3], row[4])

    def latest_bci_sequence(self) -> int:
        """The highest BCI sequence number (0 when none was issued)."""
        row = self._db.execute("SELECT MAX(sequence_num) FROM bcis").fetchone()
        return int(row[0] or 0)

    # -- housekeeping ---------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The schema version the database records (None: not a setpay CA database)."""
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            return None
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return None if row is None else int(row[0])

    def purge(self, sessions_before_ms: int, responses_before_ms: int) -> None:
        """Forget expired sessions and old stored answers (decided requests are kept)."""
        self._db.execute("DELETE FROM sessions WHERE expires_ms < ?", (sessions_before_ms,))
        self._db.execute("DELETE FROM responses WHERE created_ms < ?", (responses_before_ms,))


class CaStore:
    """The CA's SQLite database: open once, then ``read()`` / ``write()`` transactions."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._path = path
        self._lock = threading.RLock()

    @property
    def path(self) -> Path:
        """Where the database lives."""
        return self._path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> CaStore:
        """Open ``ca.db`` (creating its schema when ``create``); checks the schema version."""
        if not create and not path.exists():
            raise StoreError(f"no CA database at {path}")
        try:
            if not path.exists():
                # Owner only: the store keeps the wallets' back keys (SQLite gives the
                # -wal and -shm files the database file's permissions).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_MODE))
        except OSError as exc:
            raise StoreError(f"cannot create CA database {path}: {exc.strerror}") from exc
        try:
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for
            # writers), never implicitly by the sqlite3 module.
            db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open CA database {path}: {exc}") from exc
        store = cls(db, path)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            store._prepare(create)
        except sqlite3.Error as exc:
            store.close()
            raise StoreError(f"cannot open CA database {path}: {exc}") from exc
        except BaseException:  # SchemaMismatch: not a database of ours, or not of this code
            store.close()
            raise
        return store

    @classmethod
    def open_readonly(cls, path: Path) -> CaStore:
        """Open ``ca.db`` for reading only (``setpay ca list``); checks the schema version.

        Nothing is written, not even the journal mode: the running bank set WAL when it
        created the file, and SQLite keeps it.
        """
        if not path.exists():
            raise StoreError(f"no CA database at {path}")
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open CA database {path}: {exc}") from exc
        store = cls(db, path)
        try:
            with store.read() as tx:
                _check_version(path, tx.schema_version())
        except BaseException:
            store.close()
            raise
        return store

    def _prepare(self, create: bool) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                exists = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                ).fetchone()
                if exists is None and create:
                    for statement in SCHEMA:
                        self._db.execute(statement)
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                _check_version(self._path, StoreTransaction(self._db).schema_version())
                for statement in INDEXES:
                    self._db.execute(statement)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[StoreTransaction]:
        # Waited for without the worker's turn to compute: a merchant's registration opens
        # its ledger account inside this lock (gateway.cpu_turn.holding).
        with holding(self._lock):
            try:
                self._db.execute(begin)
            except sqlite3.Error as exc:
                raise StoreError(f"CA database unavailable: {exc}") from exc
            try:
                yield StoreTransaction(self._db)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"CA database error: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # The transaction may already be gone (SQLite rolls back on some errors itself).
        with suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def read(self) -> AbstractContextManager[StoreTransaction]:
        """A read transaction (a consistent snapshot)."""
        return self._transaction("BEGIN")

    def write(self) -> AbstractContextManager[StoreTransaction]:
        """A write transaction: taken at once (BEGIN IMMEDIATE), committed durably on exit."""
        return self._transaction("BEGIN IMMEDIATE")


def _issued(row: Sequence[Any]) -> IssuedCertificate:
    """A row of ``certificates`` (its columns in table order) as a record."""
    thumb, serial, issuer, kind, usage, subject, der, not_after_ms, issued_ms = row[:9]
    return IssuedCertificate(
        thumb, int(serial, 16), issuer, kind, usage, subject, der, not_after_ms, issued_ms
    )


def _check_version(path: Path, found: int | None) -> None:
    """SchemaMismatch unless the database records this version's schema."""
    if found is None:
        raise SchemaMismatch(f"{path} holds no setpay CA schema")
    if found != SCHEMA_VERSION:
        raise SchemaMismatch(f"{path}: schema {found}, need {SCHEMA_VERSION}")
